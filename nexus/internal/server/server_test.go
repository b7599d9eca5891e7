package server_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

const password = "correct horse battery"

func (s *stack) init() {
	s.t.Helper()
	_, err := s.operator(adminID).Init(s.t.Context(), connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password)}))
	if err != nil {
		s.t.Fatalf("init: %v", err)
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

	list, err := s.secrets(adminID).ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "apps/"}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apps/demo/db", "apps/web/api"}, list.Msg.GetPaths()); diff != "" {
		t.Errorf("list apps/ (-want +got):\n%s", diff)
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
	s.put("apps/a", map[string]string{"k": "value-a"})
	s.put("apps/a", map[string]string{"k": "value-a2"})
	s.put("apps/b", map[string]string{"k": "value-b"})
	db := s.db()
	ctx := t.Context()

	tests := []struct {
		name   string
		sql    string
		path   string
		verion int64
	}{
		{"flipped ciphertext byte", `UPDATE secret_versions SET sealed = set_byte(sealed, 40, get_byte(sealed, 40) # 1) WHERE path = 'apps/b' AND version = 1`, "apps/b", 1},
		{"sealed data from another path", `UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE path = 'apps/b' AND version = 1) WHERE path = 'apps/a' AND version = 1`, "apps/a", 1},
		{"sealed data from another version", `UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE path = 'apps/a' AND version = 1) WHERE path = 'apps/a' AND version = 2`, "apps/a", 2},
	}
	for _, tt := range tests {
		// Each case reads its own row; they run in sequence on one stack.
		if _, err := db.Exec(ctx, tt.sql); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		_, err := s.get(tt.path, tt.verion)
		if connect.CodeOf(err) != connect.CodeDataLoss {
			t.Errorf("%s: get error = %v, want DataLoss", tt.name, err)
		}
	}

	// A DEK reference changed to another existing data key.
	s.put("apps/c", map[string]string{"k": "value-c"})
	if _, err := db.Exec(ctx, `INSERT INTO data_keys (id, root_key_version, wrapped) SELECT '\x00112233445566778899aabbccddeeff'::bytea, root_key_version, wrapped FROM data_keys LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE secret_versions SET dek_id = '\x00112233445566778899aabbccddeeff'::bytea WHERE path = 'apps/c'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get("apps/c", 0); connect.CodeOf(err) != connect.CodeDataLoss {
		t.Errorf("changed DEK reference: get error = %v, want DataLoss", err)
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

	if _, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)})); err != nil {
		t.Fatal(err)
	}
	got, err := s.get("apps/x", 0)
	if err != nil || got.GetData()["k"] != "v" {
		t.Fatalf("get after unseal = %v, %v", got, err)
	}
	_, err = s.operator(adminID).Init(ctx, connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeFailedPrecondition, "already initialised")
}
