package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// auditServer implements nexusv1connect.AuditServiceHandler.
type auditServer struct{ *Server }

// ListAuditRecords returns matching records, newest first.
func (a auditServer) ListAuditRecords(ctx context.Context, req *connect.Request[nexusv1.ListAuditRecordsRequest]) (*connect.Response[nexusv1.ListAuditRecordsResponse], error) {
	return unary(ctx, a.Server, req, a.listAuditRecords)
}

func (a auditServer) listAuditRecords(ctx context.Context, c *call, m *nexusv1.ListAuditRecordsRequest) (*nexusv1.ListAuditRecordsResponse, error) {
	limit, err := secret.PageSize(m.GetPageSize())
	if err != nil {
		return nil, err
	}
	f := audit.Filter{
		Caller:       m.GetCaller(),
		TargetPrefix: m.GetTargetPrefix(),
		Decision:     m.GetDecision(),
		Limit:        limit,
	}
	switch f.Decision {
	case "", "allow", "deny":
	default:
		return nil, fault.New(fault.Invalid, "decision: must be allow or deny, got %q", f.Decision)
	}
	if rpc := m.GetRpc(); rpc != "" {
		f.Procedure = rpc
		if !strings.HasPrefix(rpc, "/") {
			f.Procedure = "/" + rpc
		}
	}
	if m.Since != nil {
		t := m.GetSince().AsTime()
		f.Since = &t
	}
	if m.Until != nil {
		t := m.GetUntil().AsTime()
		f.Until = &t
	}
	if tok := m.GetPageToken(); tok != "" {
		at, id, err := decodeAuditToken(tok)
		if err != nil {
			return nil, err
		}
		f.BeforeAt, f.BeforeID = &at, id
	}
	rows, more, err := a.store.AuditRecords(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.ListAuditRecordsResponse{}
	for _, r := range rows {
		resp.Records = append(resp.Records, &nexusv1.AuditRecord{
			Id:            r.ID,
			Time:          timestamppb.New(r.At),
			RequestId:     r.RequestID,
			Caller:        r.Caller,
			Peer:          r.Peer,
			Rpc:           r.Procedure,
			Target:        r.Target,
			Decision:      r.Decision,
			Reason:        r.Reason,
			Code:          r.Code,
			DurationUs:    r.DurationUS,
			Chain:         audit.ChainName(r.ChainID, r.Lane),
			Seq:           r.Seq,
			Authenticated: r.MAC != nil,
		})
	}
	if more {
		last := rows[len(rows)-1]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%d", last.At.UnixMicro(), last.ID))
	}
	return resp, nil
}

func decodeAuditToken(tok string) (time.Time, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	var micros, id int64
	if err == nil {
		_, err = fmt.Sscanf(string(b), "%d:%d", &micros, &id)
	}
	if err != nil {
		return time.Time{}, 0, fault.New(fault.Invalid, "page_token: is not a token from an audit listing")
	}
	return time.UnixMicro(micros), id, nil
}

// VerifyAuditTrail checks every chain.
func (a auditServer) VerifyAuditTrail(ctx context.Context, req *connect.Request[nexusv1.VerifyAuditTrailRequest]) (*connect.Response[nexusv1.VerifyAuditTrailResponse], error) {
	return unary(ctx, a.Server, req, a.verifyAuditTrail)
}

func (a auditServer) verifyAuditTrail(ctx context.Context, c *call, _ *nexusv1.VerifyAuditTrailRequest) (*nexusv1.VerifyAuditTrailResponse, error) {
	rep, err := a.trail.Verify(ctx)
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.VerifyAuditTrailResponse{Ok: rep.OK, UnauthenticatedRecords: rep.Unauthenticated}
	for _, c := range rep.Chains {
		resp.Chains = append(resp.Chains, &nexusv1.ChainReport{
			Chain: c.Chain, Records: c.Records, Ok: c.OK, BadRecordId: c.BadID, BadSeq: c.BadSeq, Problem: c.Problem,
		})
	}
	return resp, nil
}

// PruneAuditTrail deletes old records, leaving checkpoints.
func (a auditServer) PruneAuditTrail(ctx context.Context, req *connect.Request[nexusv1.PruneAuditTrailRequest]) (*connect.Response[nexusv1.PruneAuditTrailResponse], error) {
	return unary(ctx, a.Server, req, a.pruneAuditTrail)
}

func (a auditServer) pruneAuditTrail(ctx context.Context, c *call, m *nexusv1.PruneAuditTrailRequest) (*nexusv1.PruneAuditTrailResponse, error) {
	if m.Before == nil {
		return nil, fault.New(fault.Invalid, "before: required")
	}
	before := m.GetBefore().AsTime()
	if before.After(time.Now()) {
		return nil, fault.New(fault.Invalid, "before: must not be in the future")
	}
	deleted, cps, err := a.trail.Prune(ctx, c.record, before)
	if err != nil {
		return nil, err
	}
	return &nexusv1.PruneAuditTrailResponse{Deleted: deleted, Checkpoints: cps}, nil
}
