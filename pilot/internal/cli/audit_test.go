package cli

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// at is the timestamp of t written in RFC 3339.
func at(t *testing.T, s string) *timestamppb.Timestamp {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return timestamppb.New(tm)
}

// TestRunAuditList runs audit list against the fake Nexus: filters and
// how they are checked, and the output formats. testNow is
// 2025-06-01T12:00:00Z.
func TestRunAuditList(t *testing.T) {
	t.Parallel()
	const usage = "\nRun 'spike audit list --help' for usage.\n"
	list := func(r *nexusv1.ListAuditRecordsRequest) []proto.Message {
		if r.PageSize == 0 {
			r.PageSize = 100
		}
		return []proto.Message{r}
	}
	notTime := func(flag, value string) string {
		return "spike: " + flag + ": \"" + value + "\" is not an RFC 3339 time (2025-03-01T00:00:00Z), a date (2025-03-01) or a duration ago (30m, 1h, 7d)" + usage
	}
	runCases(t, []cliCase{
		{
			name: "table",
			args: []string{"audit", "list"},
			wantStdout: `TIME                  DECISION  CODE               CALLER                            RPC        TARGET       REASON                 DURATION
2025-06-01T11:59:58Z  allow     ok                 spiffe://spike.local/spike/pilot  PutSecret  apps/web/db  admin                  2.35s
2025-06-01T11:30:00Z  deny      permission_denied  spiffe://spike.local/app/other    GetSecret  apps/web/db  no policy grants read  850µs
2024-12-31T23:00:00Z  allow     ok                 spiffe://spike.local/app/web      GetSecret  apps/web/db  web-read               1.2ms
`,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{}),
			token:        "spk_audit.dG9rZW4",
			wantAuth:     []string{"Bearer spk_audit.dG9rZW4"},
		},
		{
			name:         "empty table",
			args:         []string{"audit", "list", "--caller", "spiffe://spike.local/nobody"},
			audit:        []*nexusv1.AuditRecord{},
			wantStdout:   "no audit records match\n",
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{Caller: "spiffe://spike.local/nobody"}),
		},
		{
			name: "table quotes control characters",
			args: []string{"audit", "list"},
			audit: []*nexusv1.AuditRecord{{
				Time: created, Caller: "spiffe://x/\x1b[31m", Rpc: "Odd", Target: "a\tb", Decision: "deny", Code: "invalid_argument",
			}},
			wantStdout: `TIME                  DECISION  CODE              CALLER                 RPC  TARGET  REASON  DURATION
2025-03-04T05:06:07Z  deny      invalid_argument  "spiffe://x/\x1b[31m"  Odd  "a\tb"  -       0µs
`,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{}),
		},
		{
			name: "all filters",
			args: []string{"audit", "list", "--since", "1h", "--until", "2025-06-01T13:30:00.5+02:00", "--caller", webID,
				"--path", "apps/web/", "--rpc", "GetSecret", "--decision", "DENY", "--limit", "20"},
			anyStdout: true,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{
				Since: at(t, "2025-06-01T11:00:00Z"), Until: at(t, "2025-06-01T11:30:00.5Z"), Caller: webID,
				TargetPrefix: "apps/web/", Rpc: "GetSecret", Decision: "deny", PageSize: 20,
			}),
		},
		{
			name:         "days",
			args:         []string{"audit", "list", "--since", "7d", "--until", "1d12h", "--rpc", "/spike.nexus.v1.SecretService/GetSecret"},
			anyStdout:    true,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{Since: at(t, "2025-05-25T12:00:00Z"), Until: at(t, "2025-05-31T00:00:00Z"), Rpc: "/spike.nexus.v1.SecretService/GetSecret"}),
		},
		{
			name:         "minutes and a date",
			args:         []string{"audit", "list", "--since", "2025-06-01", "--until", "30m", "--decision", "allow"},
			anyStdout:    true,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{Since: at(t, "2025-06-01T00:00:00Z"), Until: at(t, "2025-06-01T11:30:00Z"), Decision: "allow"}),
		},
		{
			name:         "limit above the largest page",
			args:         []string{"audit", "list", "--limit", "5000"},
			anyStdout:    true,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{PageSize: 1000}),
		},
		{
			name:         "limit 0 is all",
			args:         []string{"audit", "list", "--limit", "0"},
			anyStdout:    true,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{PageSize: 1000}),
		},
		{name: "bad since", args: []string{"audit", "list", "--since", "yesterday"}, wantCode: 1, wantStderr: notTime("--since", "yesterday")},
		{name: "bad until", args: []string{"audit", "list", "--until", "2025-06-01T12:00:00"}, wantCode: 1, wantStderr: notTime("--until", "2025-06-01T12:00:00")},
		{name: "fractional days", args: []string{"audit", "list", "--since", "1.5d"}, wantCode: 1, wantStderr: notTime("--since", "1.5d")},
		{name: "unit missing", args: []string{"audit", "list", "--since", "90"}, wantCode: 1, wantStderr: notTime("--since", "90")},
		{
			name:       "negative duration",
			args:       []string{"audit", "list", "--since", "-1h"},
			wantCode:   1,
			wantStderr: "spike: --since: \"-1h\": a duration ago must be positive" + usage,
		},
		{
			name:       "zero duration",
			args:       []string{"audit", "list", "--until", "0d"},
			wantCode:   1,
			wantStderr: "spike: --until: \"0d\": a duration ago must be positive" + usage,
		},
		{
			name:       "too many days",
			args:       []string{"audit", "list", "--since", "999999999d"},
			wantCode:   1,
			wantStderr: "spike: --since: \"999999999d\": too many days" + usage,
		},
		{
			name:       "since after until",
			args:       []string{"audit", "list", "--since", "1h", "--until", "2h"},
			wantCode:   1,
			wantStderr: "spike: --since 2025-06-01T11:00:00Z is after --until 2025-06-01T10:00:00Z; nothing can match" + usage,
		},
		{
			name:       "bad decision",
			args:       []string{"audit", "list", "--decision", "maybe"},
			wantCode:   1,
			wantStderr: "spike: --decision must be allow or deny, got \"maybe\"" + usage,
		},
		{
			name:       "empty decision",
			args:       []string{"audit", "list", "--decision="},
			wantCode:   1,
			wantStderr: "spike: --decision must be allow or deny, got \"\"" + usage,
		},
		{
			name:       "negative limit",
			args:       []string{"audit", "list", "--limit", "-1"},
			wantCode:   1,
			wantStderr: "spike: --limit must be 0 (all records) or more, got -1" + usage,
		},
		{
			name:       "limit not a number",
			args:       []string{"audit", "list", "--limit", "ten"},
			wantCode:   1,
			wantStderr: "spike: invalid argument \"ten\" for \"--limit\" flag: strconv.ParseInt: parsing \"ten\": invalid syntax" + usage,
		},
		{
			name:       "arguments",
			args:       []string{"audit", "list", "apps/"},
			wantCode:   1,
			wantStderr: "spike: spike audit list takes no arguments, got \"apps/\"" + usage,
		},
		{
			name:         "refused",
			args:         []string{"audit", "list"},
			serverErr:    connect.NewError(connect.CodePermissionDenied, errors.New("audit records are for admins: log in with: spike login")),
			wantCode:     2,
			wantStderr:   "spike: audit records are for admins: log in with: spike login\n",
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{}),
		},
		{
			name:         "unreachable",
			args:         []string{"audit", "list"},
			unreachable:  true,
			wantCode:     1,
			wantInStderr: []string{"spike: cannot reach Nexus at http://127.0.0.1:"},
		},
		{
			name: "json",
			args: []string{"audit", "list", "--limit", "2", "-o", "json"},
			wantStdout: `{
  "records": [
    {
      "id": 3,
      "time": "2025-06-01T11:59:58.123456789Z",
      "request_id": "req-3",
      "caller": "spiffe://spike.local/spike/pilot",
      "peer": "127.0.0.1:50312",
      "rpc": "/spike.nexus.v1.SecretService/PutSecret",
      "target": "apps/web/db",
      "decision": "allow",
      "reason": "admin",
      "code": "ok",
      "duration_us": 2345678,
      "chain": "nexus-a",
      "seq": 3,
      "authenticated": true
    },
    {
      "id": 2,
      "time": "2025-06-01T11:30:00.000005Z",
      "request_id": "req-2",
      "caller": "spiffe://spike.local/app/other",
      "peer": "10.0.0.7:41000",
      "rpc": "/spike.nexus.v1.SecretService/GetSecret",
      "target": "apps/web/db",
      "decision": "deny",
      "reason": "no policy grants read",
      "code": "permission_denied",
      "duration_us": 850,
      "chain": "nexus-a",
      "seq": 2,
      "authenticated": true
    }
  ]
}
`,
			wantStderr:   "spike: note: showing the newest 2 records; more match: raise --limit (0 for all) or narrow the filters\n",
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{PageSize: 2}),
		},
		{
			name:         "json empty",
			args:         []string{"audit", "list", "-o", "json"},
			audit:        []*nexusv1.AuditRecord{},
			wantStdout:   "{\n  \"records\": []\n}\n",
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{}),
		},
		{
			name: "yaml",
			args: []string{"audit", "list", "-o", "yaml"},
			audit: []*nexusv1.AuditRecord{{
				Id: 9, Time: created, Caller: webID, Peer: "10.0.0.5:40000", Rpc: "/spike.nexus.v1.PolicyService/ListPolicies",
				Decision: "deny", Reason: "admin only", Code: "permission_denied", DurationUs: 42, Chain: "nexus-b", Seq: 4,
			}},
			wantStdout: `records:
  - id: 9
    time: "2025-03-04T05:06:07Z"
    request_id: ""
    caller: spiffe://spike.local/app/web
    peer: 10.0.0.5:40000
    rpc: /spike.nexus.v1.PolicyService/ListPolicies
    target: ""
    decision: deny
    reason: admin only
    code: permission_denied
    duration_us: 42
    chain: nexus-b
    seq: 4
    authenticated: false
`,
			wantRequests: list(&nexusv1.ListAuditRecordsRequest{}),
		},
	})
}

// TestAuditListPages checks that list follows next_page_token until it has
// --limit records or Nexus has no more, asking for pages of
// min(limit, 1000), and prints the newest records in Nexus's order.
func TestAuditListPages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		records    int
		cap        int // the fake's largest page; 0: none
		args       []string
		wantSize   int32
		wantTokens []string // page token of each request
		wantIDs    int      // records printed: ids records down to records-wantIDs+1
		wantMore   bool
	}{
		{name: "one page holds the limit", records: 250, args: []string{"--limit", "120"}, wantSize: 120, wantTokens: []string{""}, wantIDs: 120, wantMore: true},
		{name: "stops at the limit", records: 250, cap: 50, args: []string{"--limit", "120"}, wantSize: 120, wantTokens: []string{"", "50", "100"}, wantIDs: 120, wantMore: true},
		{name: "limit on a page boundary", records: 250, cap: 50, args: []string{"--limit", "100"}, wantSize: 100, wantTokens: []string{"", "50"}, wantIDs: 100, wantMore: true},
		{name: "limit is all there is", records: 100, cap: 50, args: []string{"--limit", "100"}, wantSize: 100, wantTokens: []string{"", "50"}, wantIDs: 100},
		{name: "fewer than the limit", records: 130, cap: 50, args: []string{"--limit", "500"}, wantSize: 500, wantTokens: []string{"", "50", "100"}, wantIDs: 130},
		{name: "default limit", records: 250, cap: 30, wantSize: 100, wantTokens: []string{"", "30", "60", "90"}, wantIDs: 100, wantMore: true},
		{name: "all", records: 2500, args: []string{"--limit", "0"}, wantSize: 1000, wantTokens: []string{"", "1000", "2000"}, wantIDs: 2500},
		{name: "large limit", records: 2500, args: []string{"--limit", "1500"}, wantSize: 1000, wantTokens: []string{"", "1000"}, wantIDs: 1500, wantMore: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeNexus{audit: manyAuditRecords(tt.records), auditPageSize: tt.cap}
			args := append([]string{"audit", "list", "-o", "json", "--since", "1d"}, tt.args...)
			stdout, stderr, code := runSpikeAt(t, fake.serve(t), args...)
			if code != 0 {
				t.Fatalf("exit code %d, stderr %q", code, stderr)
			}
			var want []proto.Message
			for _, token := range tt.wantTokens {
				want = append(want, &nexusv1.ListAuditRecordsRequest{Since: at(t, "2025-05-31T12:00:00Z"), PageSize: tt.wantSize, PageToken: token})
			}
			if diff := cmp.Diff(want, fake.received(), protocmp.Transform()); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
			var doc auditListDoc
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
				t.Fatalf("output is not JSON: %v", err)
			}
			if len(doc.Records) != tt.wantIDs {
				t.Fatalf("printed %d records, want %d", len(doc.Records), tt.wantIDs)
			}
			for i, r := range doc.Records {
				if want := int64(tt.records - i); r.ID != want {
					t.Fatalf("record %d has id %d, want %d (newest first)", i, r.ID, want)
				}
			}
			if gotMore := strings.Contains(stderr, "more match"); gotMore != tt.wantMore {
				t.Errorf("stderr %q: note on more records = %t, want %t", stderr, gotMore, tt.wantMore)
			}
		})
	}
}

// TestAuditListSameToken checks that list gives up when Nexus hands back
// the page token it was given, instead of asking forever.
func TestAuditListSameToken(t *testing.T) {
	t.Parallel()
	fake := &fakeNexus{audit: manyAuditRecords(10), auditPageSize: 2, auditNextToken: "2"}
	_, stderr, code := runSpikeAt(t, fake.serve(t), "audit", "list")
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := "spike: the listing does not advance: Nexus returned the same page token twice\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	if got := len(fake.received()); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}

// runSpikeAt runs spike against the Nexus at url at testNow, with an
// empty stdin.
func runSpikeAt(t *testing.T, url string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	p := &Program{
		Version: "test",
		Getenv:  envFunc(nil),
		Stdin:   strings.NewReader(""),
		Stdout:  &stdout,
		Stderr:  &stderr,
		dial:    dialPlain(url),
		now:     func() time.Time { return testNow },
	}
	code := p.Run(t.Context(), args)
	return stdout.String(), stderr.String(), code
}

// TestRunAuditVerify runs audit verify against the fake Nexus: the report
// per chain, the note on unauthenticated records, and exit code 2 with a
// message on stderr when a chain failed.
func TestRunAuditVerify(t *testing.T) {
	t.Parallel()
	verifyReq := []proto.Message{&nexusv1.VerifyAuditTrailRequest{}}
	const failedMsg = "spike: audit trail failed verification\n"
	failed := &nexusv1.VerifyAuditTrailResponse{
		Chains: []*nexusv1.ChainReport{
			{Chain: "nexus-a", Records: 120, Ok: true},
			{Chain: "nexus-b", Records: 57, BadRecordId: 4711, BadSeq: 12, Problem: "MAC mismatch: the record was changed"},
			{Chain: "nexus-c", Records: 9, BadSeq: 3, Problem: "sequence gap: record 3 is missing"},
		},
		UnauthenticatedRecords: 1,
	}
	runCases(t, []cliCase{
		{
			name:         "ok",
			args:         []string{"audit", "verify"},
			wantStdout:   "chain nexus-a: ok, 3 records\naudit trail ok: 1 chain, 3 records\n",
			wantRequests: verifyReq,
		},
		{
			name: "ok with several chains and unauthenticated records",
			args: []string{"audit", "verify"},
			verify: &nexusv1.VerifyAuditTrailResponse{
				Ok:                     true,
				Chains:                 []*nexusv1.ChainReport{{Chain: "nexus-a", Records: 1, Ok: true}, {Chain: "nexus-b", Records: 41, Ok: true}},
				UnauthenticatedRecords: 5,
			},
			wantStdout: `chain nexus-a: ok, 1 record
chain nexus-b: ok, 41 records
audit trail ok: 2 chains, 42 records
note: 5 records were written while SPIKE was sealed: recorded, but without a MAC, so verify cannot vouch for them
`,
			wantRequests: verifyReq,
		},
		{
			name:         "empty trail",
			args:         []string{"audit", "verify"},
			verify:       &nexusv1.VerifyAuditTrailResponse{Ok: true},
			wantStdout:   "audit trail ok: 0 chains, 0 records\n",
			wantRequests: verifyReq,
		},
		{
			name:   "failed",
			args:   []string{"audit", "verify"},
			verify: failed,
			wantStdout: `chain nexus-a: ok, 120 records
chain nexus-b: FAILED at record 4711 (seq 12): MAC mismatch: the record was changed
chain nexus-c: FAILED at a missing record (seq 3): sequence gap: record 3 is missing
audit trail FAILED verification: 2 of 3 chains failed
note: 1 record was written while SPIKE was sealed: recorded, but without a MAC, so verify cannot vouch for them
`,
			wantCode:     2,
			wantStderr:   failedMsg,
			wantRequests: verifyReq,
		},
		{
			name:         "not ok without a failed chain",
			args:         []string{"audit", "verify"},
			verify:       &nexusv1.VerifyAuditTrailResponse{Chains: []*nexusv1.ChainReport{{Chain: "nexus-a", Records: 2, Ok: true}}},
			wantStdout:   "chain nexus-a: ok, 2 records\naudit trail FAILED verification\n",
			wantCode:     2,
			wantStderr:   failedMsg,
			wantRequests: verifyReq,
		},
		{
			name:         "a failed chain in an ok answer",
			args:         []string{"audit", "verify"},
			verify:       &nexusv1.VerifyAuditTrailResponse{Ok: true, Chains: []*nexusv1.ChainReport{{Chain: "nexus-a", Records: 2, BadRecordId: 2, BadSeq: 2, Problem: "bad MAC"}}},
			wantStdout:   "chain nexus-a: FAILED at record 2 (seq 2): bad MAC\naudit trail FAILED verification: 1 of 1 chain failed\n",
			wantCode:     2,
			wantStderr:   failedMsg,
			wantRequests: verifyReq,
		},
		{
			name:   "failed json",
			args:   []string{"audit", "verify", "-o", "json"},
			verify: failed,
			wantStdout: `{
  "ok": false,
  "chains": [
    {
      "chain": "nexus-a",
      "records": 120,
      "ok": true,
      "bad_record_id": 0,
      "bad_seq": 0,
      "problem": ""
    },
    {
      "chain": "nexus-b",
      "records": 57,
      "ok": false,
      "bad_record_id": 4711,
      "bad_seq": 12,
      "problem": "MAC mismatch: the record was changed"
    },
    {
      "chain": "nexus-c",
      "records": 9,
      "ok": false,
      "bad_record_id": 0,
      "bad_seq": 3,
      "problem": "sequence gap: record 3 is missing"
    }
  ],
  "unauthenticated_records": 1
}
`,
			wantCode:     2,
			wantStderr:   `{"code":"audit_trail_failed","message":"audit trail failed verification","exit":2}` + "\n",
			wantRequests: verifyReq,
		},
		{
			name:         "ok yaml",
			args:         []string{"audit", "verify", "-o", "yaml"},
			wantStdout:   "ok: true\nchains:\n  - chain: nexus-a\n    records: 3\n    ok: true\n    bad_record_id: 0\n    bad_seq: 0\n    problem: \"\"\nunauthenticated_records: 0\n",
			wantRequests: verifyReq,
		},
		{
			name:         "refused",
			args:         []string{"audit", "verify"},
			serverErr:    connect.NewError(connect.CodeFailedPrecondition, errors.New("SPIKE is sealed: unseal it first")),
			wantCode:     2,
			wantStderr:   "spike: SPIKE is sealed: unseal it first\n",
			wantRequests: verifyReq,
		},
		{
			name:         "unreachable is a local error",
			args:         []string{"audit", "verify"},
			unreachable:  true,
			wantCode:     1,
			wantInStderr: []string{"spike: cannot reach Nexus at"},
		},
	})
}

// TestRunAuditPrune runs audit prune against the fake Nexus: --before in
// its forms, --yes, and the usage errors when it cannot ask. stdin is
// never a terminal here; TestAuditPruneConfirm has one.
func TestRunAuditPrune(t *testing.T) {
	t.Parallel()
	const usage = "\nRun 'spike audit prune --help' for usage.\n"
	prune := func(s string) []proto.Message {
		return []proto.Message{&nexusv1.PruneAuditTrailRequest{Before: at(t, s)}}
	}
	runCases(t, []cliCase{
		{
			name:         "days with --yes",
			args:         []string{"audit", "prune", "--before", "90d", "--yes"},
			wantStdout:   "deleted 1 record, wrote 1 checkpoint\n",
			wantRequests: prune("2025-03-03T12:00:00Z"),
		},
		{
			name:         "hours with -y",
			args:         []string{"audit", "prune", "--before", "2160h", "-y"},
			wantStdout:   "deleted 1 record, wrote 1 checkpoint\n",
			wantRequests: prune("2025-03-03T12:00:00Z"),
		},
		{
			name:         "RFC 3339",
			args:         []string{"audit", "prune", "--before", "2025-06-01T11:45:00Z", "--yes"},
			wantStdout:   "deleted 2 records, wrote 1 checkpoint\n",
			wantRequests: prune("2025-06-01T11:45:00Z"),
		},
		{
			name:         "nothing to delete",
			args:         []string{"audit", "prune", "--before", "2020-01-01", "--yes"},
			wantStdout:   "deleted 0 records, wrote 0 checkpoints\n",
			wantRequests: prune("2020-01-01T00:00:00Z"),
		},
		{
			name:         "json",
			args:         []string{"audit", "prune", "--before", "1h", "--yes", "-o", "json"},
			wantStdout:   "{\n  \"before\": \"2025-06-01T11:00:00Z\",\n  \"deleted\": 1,\n  \"checkpoints\": 1\n}\n",
			wantRequests: prune("2025-06-01T11:00:00Z"),
		},
		{
			name:       "not a terminal without --yes",
			args:       []string{"audit", "prune", "--before", "90d"},
			stdin:      "y\n",
			wantCode:   1,
			wantStderr: "spike: stdin is not a terminal, so spike cannot ask for confirmation; add --yes to delete audit records older than 2025-03-03T12:00:00Z" + usage,
		},
		{
			name:       "--before is required",
			args:       []string{"audit", "prune", "--yes"},
			wantCode:   1,
			wantStderr: "spike: --before is required: records older than this time are deleted, e.g. --before 90d" + usage,
		},
		{
			name:       "bad --before",
			args:       []string{"audit", "prune", "--before", "3 months", "--yes"},
			wantCode:   1,
			wantStderr: "spike: --before: \"3 months\" is not an RFC 3339 time (2025-03-01T00:00:00Z), a date (2025-03-01) or a duration ago (30m, 1h, 7d)" + usage,
		},
		{
			name:       "empty --before",
			args:       []string{"audit", "prune", "--before=", "--yes"},
			wantCode:   1,
			wantStderr: "spike: --before: \"\" is not an RFC 3339 time (2025-03-01T00:00:00Z), a date (2025-03-01) or a duration ago (30m, 1h, 7d)" + usage,
		},
		{
			name:         "refused",
			args:         []string{"audit", "prune", "--before", "90d", "--yes"},
			serverErr:    connect.NewError(connect.CodePermissionDenied, errors.New("admin only")),
			wantCode:     2,
			wantStderr:   "spike: admin only\n",
			wantRequests: prune("2025-03-03T12:00:00Z"),
		},
	})
}

func TestParseWhen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "2025-01-02T03:04:05Z", want: "2025-01-02T03:04:05Z"},
		{in: "2025-01-02T03:04:05.25-01:00", want: "2025-01-02T04:04:05.25Z"},
		{in: "2025-01-02", want: "2025-01-02T00:00:00Z"},
		{in: "1s", want: "2025-06-01T11:59:59Z"},
		{in: "30m", want: "2025-06-01T11:30:00Z"},
		{in: "1h30m", want: "2025-06-01T10:30:00Z"},
		{in: "1500ms", want: "2025-06-01T11:59:58Z"},
		{in: "7d", want: "2025-05-25T12:00:00Z"},
		{in: "1d12h", want: "2025-05-31T00:00:00Z"},
		{in: "36500d", want: "1925-06-26T12:00:00Z"},
		{in: "", wantErr: "is not an RFC 3339 time"},
		{in: "d", wantErr: "is not an RFC 3339 time"},
		{in: "7days", wantErr: "is not an RFC 3339 time"},
		{in: "-7d", wantErr: "is not an RFC 3339 time"},
		{in: "+7d", wantErr: "is not an RFC 3339 time"},
		{in: "1d1d", wantErr: "is not an RFC 3339 time"},
		{in: "-5m", wantErr: "must be positive"},
		{in: "0s", wantErr: "must be positive"},
		{in: "106752d", wantErr: "too many days"},
		{in: "106751d24h", wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseWhen(tt.in, testNow.Add(300*time.Millisecond))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseWhen(%q) = %v, %v, want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseWhen(%q): %v", tt.in, err)
			}
			if s := formatWhen(got); s != tt.want {
				t.Errorf("parseWhen(%q) = %s, want %s", tt.in, s, tt.want)
			}
		})
	}
}

func TestFormatMicros(t *testing.T) {
	t.Parallel()
	for us, want := range map[int64]string{
		0: "0µs", 850: "850µs", 999: "999µs", 1000: "1.0ms", 1234: "1.2ms", 999_949: "999.9ms", 999_950: "1s",
		2_345_678: "2.35s", 62_345_678: "1m2.35s", -1: "-",
	} {
		if got := formatMicros(us); got != want {
			t.Errorf("formatMicros(%d) = %q, want %q", us, got, want)
		}
	}
}

func TestMethodName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/spike.nexus.v1.SecretService/GetSecret": "GetSecret",
		"GetSecret": "GetSecret",
		"":          "",
		"odd/":      "odd/",
	} {
		if got := methodName(in); got != want {
			t.Errorf("methodName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		input    string
		want     bool
		wantRest string
	}{
		{input: "y\n", want: true},
		{input: "Y\n", want: true},
		{input: " yes \r\n", want: true},
		{input: "YES\nmore\n", want: true, wantRest: "more\n"},
		{input: "y", want: true},
		{input: "\n"},
		{input: ""},
		{input: "n\n"},
		{input: "no\n"},
		{input: "yess\n"},
		{input: "y" + strings.Repeat(" ", maxAnswerLen) + "\n"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.input), func(t *testing.T) {
			t.Parallel()
			stdin := strings.NewReader(tt.input)
			var prompt strings.Builder
			got, err := confirm(t.Context(), stdin, &prompt, "delete?")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("confirm(%q) = %t, want %t", tt.input, got, tt.want)
			}
			if prompt.String() != "delete? [y/N] " {
				t.Errorf("prompt = %q", prompt.String())
			}
			if rest := tt.input[len(tt.input)-stdin.Len():]; rest != tt.wantRest {
				t.Errorf("left %q unread, want %q", rest, tt.wantRest)
			}
		})
	}
}

// TestAuditPruneConfirm runs audit prune with a terminal on stdin: it asks
// and prunes only on yes; --yes skips the question; Ctrl-C while it asks
// deletes nothing.
func TestAuditPruneConfirm(t *testing.T) {
	t.Parallel()
	const question = "delete audit records older than 2025-03-03T12:00:00Z? [y/N] "
	tests := []struct {
		name       string
		answer     string
		yes        bool
		interrupt  bool
		wantCode   int
		wantStdout string
		wantStderr string
		wantPruned bool
	}{
		{name: "yes", answer: "y\n", wantStdout: "deleted 1 record, wrote 1 checkpoint\n", wantStderr: question, wantPruned: true},
		{name: "YES", answer: "YES\n", wantStdout: "deleted 1 record, wrote 1 checkpoint\n", wantStderr: question, wantPruned: true},
		{name: "no", answer: "n\n", wantCode: 1, wantStderr: question + "spike: cancelled: no audit records were deleted\n"},
		{name: "empty answer", answer: "\n", wantCode: 1, wantStderr: question + "spike: cancelled: no audit records were deleted\n"},
		{name: "--yes does not ask", yes: true, wantStdout: "deleted 1 record, wrote 1 checkpoint\n", wantPruned: true},
		{name: "interrupted", interrupt: true, wantCode: 1, wantStderr: question + "\nspike: interrupted: context canceled\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			master, tty := openTerminal(t)
			fake := &fakeNexus{}
			var stdout, stderr strings.Builder
			p := &Program{
				Version: "test",
				Getenv:  envFunc(nil),
				Stdin:   tty,
				Stdout:  &stdout,
				Stderr:  &stderr,
				dial:    dialPlain(fake.serve(t)),
				now:     func() time.Time { return testNow },
			}
			if _, err := master.WriteString(tt.answer); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tt.interrupt {
				var cancel func()
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			args := []string{"audit", "prune", "--before", "90d"}
			if tt.yes {
				args = append(args, "--yes")
			}
			code := p.Run(ctx, args)
			if tt.interrupt {
				_, _ = master.WriteString("\n") // end the read still waiting
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if diff := cmp.Diff(tt.wantStdout, stdout.String()); diff != "" {
				t.Errorf("stdout mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStderr, stderr.String()); diff != "" {
				t.Errorf("stderr mismatch (-want +got):\n%s", diff)
			}
			var want []proto.Message
			if tt.wantPruned {
				want = []proto.Message{&nexusv1.PruneAuditTrailRequest{Before: at(t, "2025-03-03T12:00:00Z")}}
			}
			if diff := cmp.Diff(want, fake.received(), protocmp.Transform()); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
