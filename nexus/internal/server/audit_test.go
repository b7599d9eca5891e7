package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

func (s *stack) auditClient() nexusv1connect.AuditServiceClient {
	return nexusv1connect.NewAuditServiceClient(s.httpClient(adminID), s.url, withToken(s.token))
}

func (s *stack) verify() *nexusv1.VerifyAuditTrailResponse {
	s.t.Helper()
	resp, err := s.auditClient().VerifyAuditTrail(s.t.Context(), connect.NewRequest(&nexusv1.VerifyAuditTrailRequest{}))
	if err != nil {
		s.t.Fatalf("verify: %v", err)
	}
	return resp.Msg
}

// busyChain returns the authenticated chain with the most records and the
// ids of its records in seq order.
func (s *stack) busyChain() (chain []byte, lane int, ids []int64) {
	s.t.Helper()
	ctx := s.t.Context()
	db := s.db()
	if err := db.QueryRow(ctx, `SELECT chain_id, lane FROM audit_log WHERE lane >= 0
		GROUP BY chain_id, lane ORDER BY count(*) DESC LIMIT 1`).Scan(&chain, &lane); err != nil {
		s.t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT id FROM audit_log WHERE chain_id = $1 AND lane = $2 ORDER BY seq`, chain, lane)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			s.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) < 4 {
		s.t.Fatalf("the busiest chain has %d records; the test needs 4", len(ids))
	}
	return chain, lane, ids
}

func (s *stack) traffic(n int) {
	s.t.Helper()
	for i := range n {
		path := fmt.Sprintf("apps/t%d", i%5)
		s.put(path, map[string]string{"k": fmt.Sprint(i)})
		if _, err := s.get(path, 0); err != nil {
			s.t.Fatal(err)
		}
	}
}

// Each kind of tampering done with SQL is found, and the first bad record
// is named.
func TestAuditTampering(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// tamper changes the chain's records (ids in seq order) and returns
		// the id of the record verify must name (0: a missing one) and the
		// seq it must name.
		tamper  func(s *stack, chain []byte, lane int, ids []int64) (wantID, wantSeq int64)
		problem string
	}{
		{"update a field", func(s *stack, _ []byte, _ int, ids []int64) (int64, int64) {
			s.exec(`UPDATE audit_log SET caller = 'spiffe://spike.local/someone-else' WHERE id = $1`, ids[2])
			return ids[2], 3
		}, "fails authentication"},
		{"delete a row", func(s *stack, _ []byte, _ int, ids []int64) (int64, int64) {
			s.exec(`DELETE FROM audit_log WHERE id = $1`, ids[1])
			return ids[2], 2
		}, "missing (deleted)"},
		{"insert a forged row", func(s *stack, chain []byte, lane int, ids []int64) (int64, int64) {
			// A copy of a real record, placed as the chain's next one.
			var id int64
			err := s.db().QueryRow(s.t.Context(), `INSERT INTO audit_log
				(chain_id, lane, seq, at, request_id, caller, peer, procedure, target, decision, reason, code, duration_us, mac)
				SELECT chain_id, lane, $2, at, request_id, 'spiffe://spike.local/forger', peer, procedure, target, decision, reason, code, duration_us, mac
				FROM audit_log WHERE id = $1 RETURNING id`, ids[len(ids)-1], len(ids)+1).Scan(&id)
			if err != nil {
				s.t.Fatal(err)
			}
			return id, int64(len(ids) + 1)
		}, "fails authentication"},
		{"swap two rows' order", func(s *stack, _ []byte, _ int, ids []int64) (int64, int64) {
			s.exec(`UPDATE audit_log SET seq = -seq WHERE id = $1`, ids[1])
			s.exec(`UPDATE audit_log SET seq = 2 WHERE id = $1`, ids[2])
			s.exec(`UPDATE audit_log SET seq = 3 WHERE id = $1`, ids[1])
			return ids[2], 2
		}, "fails authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.init()
			s.traffic(20)
			if v := s.verify(); !v.GetOk() {
				t.Fatalf("untouched trail does not verify: %v", v)
			}
			chain, lane, ids := s.busyChain()
			wantID, wantSeq := tt.tamper(s, chain, lane, ids)
			v := s.verify()
			if v.GetOk() {
				t.Fatal("tampered trail verifies")
			}
			name := fmt.Sprintf("%s/%d", hex.EncodeToString(chain), lane)
			var bad []*nexusv1.ChainReport
			for _, c := range v.GetChains() {
				if !c.GetOk() {
					bad = append(bad, c)
				}
			}
			if len(bad) != 1 || bad[0].GetChain() != name {
				t.Fatalf("failed chains = %v, want only %s", bad, name)
			}
			c := bad[0]
			if c.GetBadRecordId() != wantID || c.GetBadSeq() != wantSeq || !strings.Contains(c.GetProblem(), tt.problem) {
				t.Errorf("report = record %d seq %d %q; want record %d seq %d, %q",
					c.GetBadRecordId(), c.GetBadSeq(), c.GetProblem(), wantID, wantSeq, tt.problem)
			}
		})
	}
}

func (s *stack) exec(sql string, args ...any) {
	s.t.Helper()
	if _, err := s.db().Exec(s.t.Context(), sql, args...); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

// With INSERT on the audit table revoked from Nexus's role, reads and
// writes fail with Unavailable, and no secret changes.
func TestAuditFailsClosed(t *testing.T) {
	t.Parallel()
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	role := "nexus_" + hex.EncodeToString(suffix[:])
	s := newStackAs(t, role)
	s.init()
	s.put("apps/x", map[string]string{"k": "before"})
	ctx := t.Context()
	s.exec(fmt.Sprintf(`REVOKE INSERT ON audit_log FROM %s`, role))

	_, err := s.get("apps/x", 0)
	wantCode(t, err, connect.CodeUnavailable, "audit log unavailable")
	_, err = s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "apps/x", Data: map[string]string{"k": "after"}}))
	wantCode(t, err, connect.CodeUnavailable, "audit log unavailable")
	_, err = s.secrets(adminID).PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "apps/new", Data: map[string]string{"k": "v"}}))
	wantCode(t, err, connect.CodeUnavailable, "audit log unavailable")
	_, err = s.policyClient().PutPolicy(ctx, connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: &nexusv1.Policy{
		Name: "p", SpiffeIdPattern: "spiffe://spike.local/a", PathPattern: "**", Permissions: []string{"read"}}}))
	wantCode(t, err, connect.CodeUnavailable, "audit log unavailable")

	var versions, secrets, policies int
	if err := s.db().QueryRow(ctx, `SELECT (SELECT count(*) FROM secret_versions), (SELECT count(*) FROM secrets),
		(SELECT count(*) FROM policies)`).Scan(&versions, &secrets, &policies); err != nil {
		t.Fatal(err)
	}
	if versions != 1 || secrets != 1 || policies != 0 {
		t.Fatalf("after refused requests: %d versions, %d secrets, %d policies; want 1, 1, 0", versions, secrets, policies)
	}
	s.exec(fmt.Sprintf(`GRANT INSERT ON audit_log TO %s`, role))
	if got, err := s.get("apps/x", 0); err != nil || got.GetData()["k"] != "before" {
		t.Fatalf("after restoring the grant: %v, %v", got, err)
	}
	if v := s.verify(); !v.GetOk() {
		t.Fatalf("trail does not verify: %v", v)
	}
}

// 64 concurrent readers and writers: every request has exactly one record
// and every chain verifies.
func TestAuditUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	for i := range 4 {
		s.put(fmt.Sprintf("c/%d", i), map[string]string{"k": "v"})
	}
	const n = 64
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := s.secrets(adminID) // a client, and connections, of its own
			path := fmt.Sprintf("c/%d", i%4)
			var header interface{ Get(string) string }
			if i%2 == 0 {
				resp, err := c.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
				if err != nil {
					t.Errorf("get: %v", err)
					return
				}
				header = resp.Header()
			} else {
				resp, err := c.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"i": fmt.Sprint(i)}}))
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				header = resp.Header()
			}
			ids[i] = header.Get("Spike-Request-Id")
		})
	}
	wg.Wait()
	rows, err := s.db().Query(t.Context(), `SELECT request_id, count(*) FROM audit_log WHERE request_id = ANY($1) GROUP BY request_id`, ids)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for rows.Next() {
		var id string
		var c int
		if err := rows.Scan(&id, &c); err != nil {
			t.Fatal(err)
		}
		seen[id] = c
	}
	rows.Close()
	for i, id := range ids {
		if id == "" || seen[id] != 1 {
			t.Errorf("request %d (id %q) has %d records, want 1", i, id, seen[id])
		}
	}
	v := s.verify()
	if !v.GetOk() || len(v.GetChains()) == 0 {
		t.Fatalf("trail does not verify: %v", v)
	}
}

// A denied request is recorded, with the caller and the reason; listing
// filters work and never show a secret.
func TestAuditRecordsDenialsAndLists(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/x", map[string]string{"k": "AUDIT-SECRET-VALUE"})
	ctx := t.Context()
	intruder := spiffeid.RequireFromPath(td, "/app/intruder")
	_, err := s.secrets(intruder).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
	wantCode(t, err, connect.CodePermissionDenied, "no policy grants")

	resp, err := s.auditClient().ListAuditRecords(ctx, connect.NewRequest(&nexusv1.ListAuditRecordsRequest{
		Caller: intruder.String(), Decision: "deny",
	}))
	if err != nil {
		t.Fatal(err)
	}
	recs := resp.Msg.GetRecords()
	if len(recs) != 1 {
		t.Fatalf("records of the denied caller = %v", recs)
	}
	r := recs[0]
	if r.GetTarget() != "apps/x" || r.GetCode() != "permission_denied" || !strings.Contains(r.GetReason(), "no policy grants read") ||
		r.GetRpc() != nexusv1connect.SecretServiceGetSecretProcedure || !r.GetAuthenticated() || r.GetPeer() == "" {
		t.Errorf("denial record = %v", r)
	}

	// Filters by RPC name, target prefix, time; pages, newest first.
	resp, err = s.auditClient().ListAuditRecords(ctx, connect.NewRequest(&nexusv1.ListAuditRecordsRequest{
		Rpc: "PutSecret", TargetPrefix: "apps/", Since: timestamppb.New(time.Now().Add(-time.Minute)),
	}))
	if err != nil || len(resp.Msg.GetRecords()) != 1 || resp.Msg.GetRecords()[0].GetDecision() != "allow" ||
		!strings.HasPrefix(resp.Msg.GetRecords()[0].GetReason(), "admin token token:") {
		t.Fatalf("put records = %v, %v", resp.Msg.GetRecords(), err)
	}
	var all []*nexusv1.AuditRecord
	token := ""
	for {
		page, err := s.auditClient().ListAuditRecords(ctx, connect.NewRequest(&nexusv1.ListAuditRecordsRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Msg.GetRecords()...)
		if token = page.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i].GetTime().AsTime().After(all[i-1].GetTime().AsTime()) {
			t.Errorf("record %d is newer than record %d", i, i-1)
		}
	}
	if len(all) < 4 {
		t.Fatalf("only %d records in all", len(all))
	}
	var dump string
	if err := s.db().QueryRow(ctx, `SELECT string_agg(t::text, ' ') FROM audit_log t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump, "apps/x") {
		t.Fatal("the dump does not even hold the target: the check would see nothing")
	}
	for _, secret := range []string{"AUDIT-SECRET-VALUE", password, s.token} {
		if strings.Contains(dump, secret) {
			t.Errorf("the audit log contains %q", secret)
		}
	}
}

// Pruning old records leaves checkpoints; the rest still verifies, and an
// altered checkpoint is found.
func TestAuditPrune(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.traffic(10)
	cut := time.Now()
	s.traffic(10)
	s.exec(`UPDATE audit_settings SET min_prune_age = interval '0'`) // the owner's setting
	resp, err := s.auditClient().PruneAuditTrail(t.Context(), connect.NewRequest(&nexusv1.PruneAuditTrailRequest{Before: timestamppb.New(cut)}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.GetDeleted() < 20 || resp.Msg.GetCheckpoints() == 0 {
		t.Fatalf("prune = %v", resp.Msg)
	}
	var older int
	if err := s.db().QueryRow(t.Context(), `SELECT count(*) FROM audit_log WHERE at < $1`, cut).Scan(&older); err != nil || older != 0 {
		t.Fatalf("%d records older than the cut remain (%v)", older, err)
	}
	if v := s.verify(); !v.GetOk() {
		t.Fatalf("pruned trail does not verify: %v", v)
	}
	s.exec(`UPDATE audit_checkpoints SET seq = seq + 1 WHERE ctid = (SELECT ctid FROM audit_checkpoints LIMIT 1)`)
	if v := s.verify(); v.GetOk() {
		t.Fatal("a moved checkpoint verifies")
	}
	// A trail that fails verification is not pruned: a checkpoint must not
	// certify what was tampered with.
	_, err = s.auditClient().PruneAuditTrail(t.Context(), connect.NewRequest(&nexusv1.PruneAuditTrailRequest{Before: timestamppb.New(time.Now())}))
	wantCode(t, err, connect.CodeFailedPrecondition, "fails verification")
}

// Requests refused before they are decoded (a bad body, an unknown
// procedure) are recorded too.
func TestAuditRecordsRefusedRequests(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	client := s.httpClient(spiffeid.RequireFromPath(td, "/app/prober"))
	for _, tt := range []struct {
		path, body string
		wantCode   string
	}{
		{nexusv1connect.SecretServiceGetSecretProcedure, "{not json", "http_400"},
		{"/spike.nexus.v1.NoSuchService/Steal", "{}", "http_404"},
	} {
		resp, err := client.Post(s.url+tt.path, "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		list, err := s.auditClient().ListAuditRecords(t.Context(), connect.NewRequest(&nexusv1.ListAuditRecordsRequest{Rpc: tt.path}))
		if err != nil {
			t.Fatal(err)
		}
		recs := list.Msg.GetRecords()
		if len(recs) != 1 || recs[0].GetCode() != tt.wantCode || recs[0].GetDecision() != "deny" ||
			recs[0].GetCaller() != "spiffe://spike.local/app/prober" || !strings.Contains(recs[0].GetReason(), "before it was decoded") {
			t.Errorf("%s: records = %v, want one deny with code %s", tt.path, recs, tt.wantCode)
		}
	}
	if v := s.verify(); !v.GetOk() {
		t.Fatalf("trail does not verify: %v", v)
	}
}
