package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

const password = "correct horse battery"

func (s *stack) init() {
	s.t.Helper()
	resp, err := s.operator(adminID).Init(s.t.Context(), connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password)}))
	if err != nil {
		s.t.Fatalf("init: %v", err)
	}
	s.token = resp.Msg.GetToken().GetToken()
	if s.token == "" {
		s.t.Fatal("init returned no admin token")
	}
}

func (s *stack) put(path string, data map[string]string) int64 {
	s.t.Helper()
	resp, err := s.secrets(adminID).PutSecret(s.t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: data}))
	if err != nil {
		s.t.Fatalf("put %s: %v", path, err)
	}
	return resp.Msg.GetVersion()
}

func (s *stack) get(path string, version int64) (*nexusv1.Secret, error) {
	resp, err := s.secrets(adminID).GetSecret(s.t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: path, Version: version}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetSecret(), nil
}

func wantCode(t *testing.T, err error, code connect.Code, msgPart string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message(), msgPart) {
		t.Fatalf("error message %q does not mention %q", err, msgPart)
	}
}

func TestPutGetListDelete(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()

	if v := s.put("apps/demo/db", map[string]string{"user": "admin", "pass": "s3cr3t"}); v != 1 {
		t.Fatalf("first put version = %d, want 1", v)
	}
	if v := s.put("apps/demo/db", map[string]string{"user": "admin", "pass": "n3w"}); v != 2 {
		t.Fatalf("second put version = %d, want 2", v)
	}
	s.put("apps/web/api", map[string]string{"token": "t"})
	s.put("other/x", map[string]string{"k": "v"})

	got, err := s.get("apps/demo/db", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"user": "admin", "pass": "n3w"}, got.GetData()); diff != "" {
		t.Errorf("latest data (-want +got):\n%s", diff)
	}
	if got.GetVersion() != 2 || got.GetCreatedBy() != adminID.String() || got.GetCreatedAt() == nil {
		t.Errorf("latest = version %d by %q at %v", got.GetVersion(), got.GetCreatedBy(), got.GetCreatedAt())
	}
	v1, err := s.get("apps/demo/db", 1)
	if err != nil || v1.GetData()["pass"] != "s3cr3t" {
		t.Fatalf("version 1 = %v, %v", v1.GetData(), err)
	}

	list, err := s.secrets(adminID).ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "apps/", Recursive: true}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apps/demo/db", "apps/web/api"}, list.Msg.GetPaths()); diff != "" {
		t.Errorf("list -r apps/ (-want +got):\n%s", diff)
	}
	dir, err := s.secrets(adminID).ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "apps"}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apps/demo/", "apps/web/"}, dir.Msg.GetPaths()); diff != "" {
		t.Errorf("list apps (-want +got):\n%s", diff)
	}

	del, err := s.secrets(adminID).DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: "apps/demo/db"}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{2}, del.Msg.GetVersions()); diff != "" {
		t.Errorf("deleted versions (-want +got):\n%s", diff)
	}
	_, err = s.get("apps/demo/db", 0)
	wantCode(t, err, connect.CodeNotFound, "deleted")
	if old, err := s.get("apps/demo/db", 1); err != nil || old.GetData()["pass"] != "s3cr3t" {
		t.Fatalf("version 1 after deleting version 2 = %v, %v", old, err)
	}
	_, err = s.get("apps/nope", 0)
	wantCode(t, err, connect.CodeNotFound, "apps/nope")
}

func TestInvalidInputIsRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	for _, path := range []string{"", "../etc", "a/../b", "a\x00b", strings.Repeat("a", 600), "/abs", "a//b"} {
		_, err := s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"k": "v"}}))
		wantCode(t, err, connect.CodeInvalidArgument, "path")
		_, err = s.get(path, 0)
		wantCode(t, err, connect.CodeInvalidArgument, "path")
	}
	_, err := s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "apps/x"}))
	wantCode(t, err, connect.CodeInvalidArgument, "data")
	_, err = s.get("apps/x", -1)
	wantCode(t, err, connect.CodeInvalidArgument, "version")
	_, err = s.operator(adminID).Init(ctx, connect.NewRequest(&nexusv1.InitRequest{Password: []byte("short")}))
	wantCode(t, err, connect.CodeInvalidArgument, "password")
}

func TestConcurrentInitLeavesOneKeyring(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const n = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes []string
		refusals  int
	)
	for range n {
		wg.Go(func() {
			resp, err := s.operator(adminID).Init(t.Context(), connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password)}))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				successes = append(successes, resp.Msg.GetKeyringId())
				s.token = resp.Msg.GetToken().GetToken()
			case connect.CodeOf(err) == connect.CodeFailedPrecondition && strings.Contains(err.Error(), "already initialised"):
				refusals++
			default:
				t.Errorf("init: unexpected error %v", err)
			}
		})
	}
	wg.Wait()
	if len(successes) != 1 || refusals != n-1 {
		t.Fatalf("%d inits succeeded and %d were refused, want 1 and %d", len(successes), refusals, n-1)
	}
	var rows int
	var id []byte
	if err := s.db().QueryRow(t.Context(), "SELECT count(*), (SELECT keyring_id FROM root_keyrings LIMIT 1) FROM root_keyrings").Scan(&rows, &id); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || hex.EncodeToString(id) != successes[0] {
		t.Fatalf("root_keyrings holds %d rows (id %x), want 1 with id %s", rows, id, successes[0])
	}
	// The one keyring is the one Keeper holds: secrets work.
	s.put("apps/x", map[string]string{"k": "v"})
	if _, err := s.get("apps/x", 0); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedRowsAreDataLoss(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	db := s.db()
	ctx := t.Context()
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Every case copies from a row nobody altered, so only the binding of
	// the value to its own row can catch it.
	s.put("t/src", map[string]string{"k": "source"})
	s.put("t/dst", map[string]string{"k": "destination"})
	s.put("t/multi", map[string]string{"k": "one"})
	s.put("t/multi", map[string]string{"k": "two"})
	s.put("t/flip", map[string]string{"k": "flip"})
	s.put("t/dek", map[string]string{"k": "dek"})
	s.put("t/nodek", map[string]string{"k": "no data key"})

	exec(`UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE path = 't/src' AND version = 1) WHERE path = 't/dst'`)
	exec(`UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE path = 't/multi' AND version = 1) WHERE path = 't/multi' AND version = 2`)
	exec(`UPDATE secret_versions SET sealed = set_byte(sealed, 40, get_byte(sealed, 40) # 1) WHERE path = 't/flip'`)
	// The DEK reference changed to another data key that exists.
	exec(`INSERT INTO data_keys (id, root_key_version, wrapped) SELECT '\x00112233445566778899aabbccddeeff'::bytea, root_key_version, wrapped FROM data_keys LIMIT 1`)
	exec(`UPDATE secret_versions SET dek_id = '\x00112233445566778899aabbccddeeff'::bytea WHERE path = 't/dek'`)
	// The DEK reference changed to a data key that does not exist (no
	// foreign key stops that since migration 0012): it no longer matches
	// the key id in the sealed bytes.
	exec(`UPDATE secret_versions SET dek_id = '\xffeeddccbbaa99887766554433221100'::bytea WHERE path = 't/nodek'`)

	for _, tt := range []struct {
		name    string
		path    string
		version int64
	}{
		{"sealed data from another path", "t/dst", 1},
		{"sealed data from another version", "t/multi", 2},
		{"flipped ciphertext byte", "t/flip", 1},
		{"changed DEK reference", "t/dek", 1},
		{"DEK reference changed to a missing key", "t/nodek", 1},
	} {
		_, err := s.get(tt.path, tt.version)
		if connect.CodeOf(err) != connect.CodeDataLoss || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("%s: get error = %v, want DataLoss naming %s", tt.name, err, tt.path)
		}
	}
	// The sources still read: the failures above are about binding.
	for path, version := range map[string]int64{"t/src": 1, "t/multi": 1} {
		if _, err := s.get(path, version); err != nil {
			t.Errorf("untouched version %d of %s: %v", version, path, err)
		}
	}
}

func TestNoPlaintextInDatabase(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	secretValues := []string{"PLAINTEXT-MARKER-7f3a9c", "another-very-secret-value-91b2"}
	s.put("apps/plain", map[string]string{"user": secretValues[0], "pass": secretValues[1]})
	if _, err := s.get("apps/plain", 0); err != nil {
		t.Fatal(err)
	}

	db := s.db()
	ctx := t.Context()
	rows, err := db.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if rows.Err() != nil || len(tables) < 4 {
		t.Fatalf("tables = %v, %v", tables, rows.Err())
	}
	var dump bytes.Buffer
	for _, table := range tables {
		// Table names come from the catalog, not from input.
		r, err := db.Query(ctx, fmt.Sprintf(`SELECT t::text FROM %q AS t`, table))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var row string
			if err := r.Scan(&row); err != nil {
				t.Fatal(err)
			}
			dump.WriteString(row)
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	if dump.Len() == 0 {
		t.Fatal("database dump is empty")
	}
	for _, needle := range append(secretValues, password) {
		for _, form := range []string{needle, hex.EncodeToString([]byte(needle))} {
			if strings.Contains(strings.ToLower(dump.String()), strings.ToLower(form)) {
				t.Errorf("database contains %q", form)
			}
		}
	}
	if !strings.Contains(dump.String(), "apps/plain") {
		t.Error("dump does not contain the secret's path: the check would not see anything")
	}
}

func TestNonAdminIsDenied(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/x", map[string]string{"k": "v"})
	workload := spiffeid.RequireFromPath(td, "/app/web")
	_, err := s.secrets(workload).GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
	wantCode(t, err, connect.CodePermissionDenied, workload.String())
	_, err = s.operator(workload).Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, "may not call")
}

func TestKeeperRestartDropsCachedKeys(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/x", map[string]string{"k": "v"})
	if _, err := s.get("apps/x", 0); err != nil { // the data key is now cached
		t.Fatal(err)
	}
	s.restartKeeper()
	// Nobody asks for the status: Nexus's own watch must notice.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.get("apps/x", 0)
		if connect.CodeOf(err) == connect.CodeFailedPrecondition && strings.Contains(err.Error(), "sealed") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("get still answers %v after Keeper restarted", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSealedAfterKeeperLosesKeyring(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := t.Context()

	_, err := s.get("apps/x", 0)
	wantCode(t, err, connect.CodeFailedPrecondition, "not initialised")
	s.init()
	s.put("apps/x", map[string]string{"k": "v"})

	s.restartKeeper()
	st, err := s.operator(adminID).Status(ctx, connect.NewRequest(&nexusv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Msg.GetSealed() || !st.Msg.GetInitialized() || !st.Msg.GetKeeperReachable() || st.Msg.GetSchemaVersion() < 1 {
		t.Fatalf("status after seal = %v", st.Msg)
	}
	_, err = s.get("apps/x", 0)
	wantCode(t, err, connect.CodeFailedPrecondition, "spike operator unseal")
	_, err = s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "apps/y", Data: map[string]string{"k": "v"}}))
	wantCode(t, err, connect.CodeFailedPrecondition, "sealed")

	_, err = s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte("wrong password!")}))
	wantCode(t, err, connect.CodeInvalidArgument, "wrong password")
	_, err = s.get("apps/x", 0)
	wantCode(t, err, connect.CodeFailedPrecondition, "sealed")

	// A wrong password slows the caller down: even the right one must wait.
	_, err = s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeResourceExhausted, "try again in")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)}))
		if err == nil {
			break
		}
		if connect.CodeOf(err) != connect.CodeResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("unseal after the backoff: %v", err)
		}
	}
	got, err := s.get("apps/x", 0)
	if err != nil || got.GetData()["k"] != "v" {
		t.Fatalf("get after unseal = %v, %v", got, err)
	}
	_, err = s.operator(adminID).Init(ctx, connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeFailedPrecondition, "already initialised")
}

// TestResponsesAreNotCompressed: a caller asking for gzip gets the secret
// uncompressed (no length side channel), and a compressed request is
// refused.
func TestResponsesAreNotCompressed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	value := strings.Repeat("a", 64<<10)
	s.put("apps/big", map[string]string{"v": value})

	post := func(body []byte, encoding string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			s.url+nexusv1connect.SecretServiceGetSecretProcedure, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.token)
		// Set by hand, the transport leaves the response as sent.
		req.Header.Set("Accept-Encoding", "gzip")
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := s.httpClient(adminID).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post([]byte(`{"path":"apps/big"}`), "")
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("status %d, Content-Encoding %q; want 200 and none", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	if !bytes.Contains(body, []byte(value)) {
		t.Errorf("response of %d bytes does not hold the %d-byte value in the clear", len(body), len(value))
	}

	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(`{"path":"apps/big"}`))
	_ = w.Close()
	if resp := post(gz.Bytes(), "gzip"); resp.StatusCode == http.StatusOK {
		t.Errorf("gzip-compressed request: status 200, want it refused")
	}
}
