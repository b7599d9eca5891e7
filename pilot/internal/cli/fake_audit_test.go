package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// testNow is the time that durations like --since 1h count back from in
// tests.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// demoAuditRecords is the fake's audit trail before any prune: an allowed
// read, a denied read and an admin write, newest first.
func demoAuditRecords() []*nexusv1.AuditRecord {
	return []*nexusv1.AuditRecord{
		{
			Id: 3, Time: timestamppb.New(time.Date(2025, 6, 1, 11, 59, 58, 123456789, time.UTC)), RequestId: "req-3",
			Caller: pilotID, Peer: "127.0.0.1:50312", Rpc: "/spike.nexus.v1.SecretService/PutSecret", Target: "apps/web/db",
			Decision: "allow", Reason: "admin", Code: "ok", DurationUs: 2345678, Chain: "nexus-a", Seq: 3, Authenticated: true,
		},
		{
			Id: 2, Time: timestamppb.New(time.Date(2025, 6, 1, 11, 30, 0, 5000, time.UTC)), RequestId: "req-2",
			Caller: otherID, Peer: "10.0.0.7:41000", Rpc: "/spike.nexus.v1.SecretService/GetSecret", Target: "apps/web/db",
			Decision: "deny", Reason: "no policy grants read", Code: "permission_denied", DurationUs: 850, Chain: "nexus-a", Seq: 2, Authenticated: true,
		},
		{
			Id: 1, Time: timestamppb.New(time.Date(2024, 12, 31, 23, 0, 0, 0, time.UTC)), RequestId: "req-1",
			Caller: webID, Peer: "10.0.0.5:40000", Rpc: "/spike.nexus.v1.SecretService/GetSecret", Target: "apps/web/db",
			Decision: "allow", Reason: "web-read", Code: "ok", DurationUs: 1234, Chain: "nexus-a", Seq: 1, Authenticated: true,
		},
	}
}

// manyAuditRecords returns n records with ids n down to 1, a second apart,
// newest first.
func manyAuditRecords(n int) []*nexusv1.AuditRecord {
	records := make([]*nexusv1.AuditRecord, n)
	for i := range records {
		id := int64(n - i)
		records[i] = &nexusv1.AuditRecord{
			Id: id, Time: timestamppb.New(testNow.Add(-time.Duration(i) * time.Second)), RequestId: fmt.Sprintf("req-%d", id),
			Caller: webID, Rpc: "/spike.nexus.v1.SecretService/GetSecret", Target: "apps/web/db",
			Decision: "allow", Reason: "web-read", Code: "ok", DurationUs: 100, Chain: "nexus-a", Seq: id, Authenticated: true,
		}
	}
	return records
}

// auditTrail returns the fake's records; the caller holds f.mu.
func (f *fakeNexus) auditTrail() []*nexusv1.AuditRecord {
	if f.audit == nil {
		f.audit = demoAuditRecords()
	}
	return f.audit
}

// ListAuditRecords hands out the trail as it is (the filters are only
// recorded), page_size records a page (100 when 0, at most auditPageSize),
// the page token being the index of the next record.
func (f *fakeNexus) ListAuditRecords(_ context.Context, req *connect.Request[nexusv1.ListAuditRecordsRequest]) (*connect.Response[nexusv1.ListAuditRecordsResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	records := f.auditTrail()
	size := int(req.Msg.GetPageSize())
	if size == 0 {
		size = 100
	}
	if f.auditPageSize > 0 && size > f.auditPageSize {
		size = f.auditPageSize
	}
	start := 0
	if t := req.Msg.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n > len(records) {
			return nil, connect.NewError(connect.CodeInvalidArgument, errBadToken)
		}
		start = n
	}
	end := min(start+size, len(records))
	resp := &nexusv1.ListAuditRecordsResponse{Records: records[start:end]}
	if end < len(records) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	if f.auditNextToken != "" {
		resp.NextPageToken = f.auditNextToken
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeNexus) VerifyAuditTrail(_ context.Context, req *connect.Request[nexusv1.VerifyAuditTrailRequest]) (*connect.Response[nexusv1.VerifyAuditTrailResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	if f.verify != nil {
		return connect.NewResponse(f.verify), nil
	}
	return connect.NewResponse(&nexusv1.VerifyAuditTrailResponse{
		Ok:     true,
		Chains: []*nexusv1.ChainReport{{Chain: "nexus-a", Records: 3, Ok: true}},
	}), nil
}

// PruneAuditTrail deletes the records older than before and reports a
// checkpoint for each chain that lost records.
func (f *fakeNexus) PruneAuditTrail(_ context.Context, req *connect.Request[nexusv1.PruneAuditTrailRequest]) (*connect.Response[nexusv1.PruneAuditTrailResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before := req.Msg.GetBefore().AsTime()
	kept := []*nexusv1.AuditRecord{} // not nil: nil means the demo trail
	chains := make(map[string]bool)
	for _, r := range f.auditTrail() {
		if r.GetTime().AsTime().Before(before) {
			chains[r.GetChain()] = true
			continue
		}
		kept = append(kept, r)
	}
	resp := &nexusv1.PruneAuditTrailResponse{Deleted: int64(len(f.audit) - len(kept)), Checkpoints: int64(len(chains))}
	f.audit = kept
	return connect.NewResponse(resp), nil
}
