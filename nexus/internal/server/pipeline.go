package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/secret"
	"github.com/spike-dev/spike/nexus/internal/token"
)

// This file is Nexus's request pipeline. Every RPC goes through unary, in
// this order:
//
//  1. a request id, a deadline (maxRequestDuration) and an audit record
//     are made for it;
//  2. decide authorizes it against rules (default deny) and notes the
//     decision in the record;
//  3. the handler runs with the call: who is calling, and the audit
//     record, which every store method that changes anything takes and
//     commits in the change's own transaction;
//  4. the error, if any, becomes a Connect code (toConnect, the one table
//     of codes);
//  5. the record is committed before the response leaves (Trail.Finish;
//     when it cannot be, the response is withheld: fail closed);
//  6. one log line and the request metrics.

// call is one request on its way through the pipeline.
type call struct {
	// id is the request id, in logs, audit records and the response.
	id string
	// caller is the SPIFFE ID of the client's SVID.
	caller spiffeid.ID
	// admin says that caller is an admin SPIFFE ID; token is the admin
	// token the request carried, if any (checked when the rule needs it).
	admin bool
	token string
	// record is the request's audit record.
	record *audit.Entry
	// mustDeliver is set by a handler whose answer holds something shown
	// only once (new unseal shares): it is answered even when its audit
	// record cannot be written, as an uncertain outcome is.
	mustDeliver bool
}

// unary runs one unary RPC through the pipeline; handle does the work of
// the procedure once the call is authorized.
func unary[Req, Res any](ctx context.Context, s *Server, req *connect.Request[Req],
	handle func(context.Context, *call, *Req) (*Res, error),
) (*connect.Response[Res], error) {
	start := time.Now()
	markObserved(ctx)
	ctx, cancel := context.WithTimeout(ctx, maxRequestDuration)
	defer cancel()
	procedure := req.Spec().Procedure
	c := &call{id: newRequestID()}
	c.caller, _ = mtls.Caller(ctx)
	c.record = s.trail.Begin(ctx, c.id, c.caller.String(), req.Peer().Addr, procedure)
	c.record.SetTarget(target(req.Msg))

	var res *Res
	reason, err := s.decide(ctx, c, procedure, req.Header(), req.Msg)
	if err == nil {
		err = replayKey(c, req)
	}
	if err != nil {
		c.record.Deny(err.Error())
	} else {
		c.record.Allow(reason)
		res, err = handle(ctx, c, req.Msg)
	}
	if err == nil && req.Spec().IdempotencyLevel != connect.IdempotencyNoSideEffects {
		// A change this process committed: watchers need not wait for
		// the next poll.
		s.watch.kick()
	}
	err = s.toConnect(err, c.id)
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	if aerr := s.trail.Finish(ctx, c.record, code); aerr != nil {
		// An uncertain outcome stays Unknown (an error that carries no
		// data): Unavailable would tell the client that nothing happened,
		// and a retry could apply the change twice.
		if code == connect.CodeUnknown.String() || c.mustDeliver {
			s.log.Error("audit record not written: the answer (an uncertain outcome, or new unseal shares) is sent all the same", "request_id", c.id, "error", aerr.Error())
		} else {
			s.log.Error("audit record not written: response withheld", "request_id", c.id, "error", aerr.Error())
			res, err = nil, connect.NewError(connect.CodeUnavailable, errors.New(withheld(aerr)))
			code = connect.CodeUnavailable.String()
		}
	}
	elapsed := time.Since(start)
	s.log.Info("request",
		"request_id", c.id,
		"caller", c.caller.String(),
		"procedure", procedure,
		"peer", req.Peer().Addr,
		"code", code,
		"duration_ms", float64(elapsed.Microseconds())/1000)
	s.metrics.ObserveRequest(rpcLabel(procedure), code, elapsed)
	if err != nil {
		if ce := new(connect.Error); errors.As(err, &ce) {
			ce.Meta().Set("Spike-Request-Id", c.id)
		}
		return nil, err
	}
	resp := connect.NewResponse(res)
	resp.Header().Set("Spike-Request-Id", c.id)
	return resp, nil
}

// IdempotencyKeyHeader carries a client's idempotency key: a mutation
// repeated with the same key by the same caller returns its first
// outcome instead of being applied again (kept at least
// OutcomeRetention).
const IdempotencyKeyHeader = "Idempotency-Key"

// OutcomeRetention is how long the first outcome of a keyed mutation is
// kept at least.
const OutcomeRetention = 24 * time.Hour

// unkeyed are the mutations that take no idempotency key: Init creates
// the audit key that outcomes are authenticated with, and is applied once
// by nature (a repeat is refused: already initialised); Unseal and Logout
// change nothing that a repeat could double, nor does Seal; Login carries the admin
// password, whose hash must not be kept, and its token could not be shown
// again anyway (a repeat issues another token, which expires unused);
// Rekey carries credentials too, and its outcome holds new shares, which
// must never be stored (a repeat is refused: the old credentials no
// longer open the keyring). The steps of a rotation and of a rewrap check
// the version they expect or do only what is left, so a repeat is refused
// or finds nothing left to do; a replayed outcome would let RotateRootKey
// hand the Keepers a keyring that was never stored.
var unkeyed = map[string]bool{
	nexusv1connect.OperatorServiceRotateRootKeyProcedure:      true,
	nexusv1connect.OperatorServiceRewrapDataKeysProcedure:     true,
	nexusv1connect.OperatorServiceDestroyOldRootKeysProcedure: true,
	nexusv1connect.OperatorServiceRewrapSecretsProcedure:      true,
	nexusv1connect.OperatorServiceRetireDataKeysProcedure:     true,
	nexusv1connect.OperatorServiceRekeyProcedure:              true,
	nexusv1connect.OperatorServiceInitProcedure:               true,
	nexusv1connect.OperatorServiceLoginProcedure:              true,
	nexusv1connect.OperatorServiceUnsealProcedure:             true,
	nexusv1connect.OperatorServiceLogoutProcedure:             true,
	nexusv1connect.OperatorServiceSealProcedure:               true,
}

// replayKey validates the request's idempotency key, if any, and gives it
// to the request's record for the store: 16 to 64 characters of
// [A-Za-z0-9_-]. Reads ignore it.
func replayKey[Req any](c *call, req *connect.Request[Req]) error {
	key := req.Header().Get(IdempotencyKeyHeader)
	spec := req.Spec()
	if key == "" || spec.IdempotencyLevel == connect.IdempotencyNoSideEffects || unkeyed[spec.Procedure] {
		return nil
	}
	if len(key) < 16 || len(key) > 64 || strings.IndexFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fault.New(fault.Invalid, "%s: must be 16 to 64 characters of A-Z, a-z, 0-9, '-' and '_'", IdempotencyKeyHeader)
	}
	msg, ok := any(req.Msg).(proto.Message)
	if !ok {
		return fmt.Errorf("request of %s is not a protobuf message", spec.Procedure)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return fmt.Errorf("hash request: %w", err)
	}
	c.record.SetReplay(c.caller.String(), key, spec.Procedure, body)
	return nil
}

// maxRequestDuration bounds every request, whatever deadline the client
// sent (or did not send), so a stuck call cannot hold a database connection.
const maxRequestDuration = 30 * time.Second

// need says what a procedure requires of its caller.
type need int

const (
	// adminSVID: an admin SPIFFE ID. For the calls that must work when no
	// token can be checked (before init, while sealed) and for login.
	adminSVID need = iota + 1
	// adminToken: an admin SPIFFE ID and a valid admin token.
	adminToken
	// secretAccess: an admin with a valid token, or a workload that a
	// policy grants the rule's permissions on the request's path.
	secretAccess
	// listAccess: as secretAccess for the list permission under the
	// listed directory; the handler filters the entries for workloads.
	listAccess
	// watchAccess: an admin with a valid token, or a workload that a
	// policy grants the rule's permissions on some path under the watched
	// prefix; the handler checks each event's path when it sends it.
	watchAccess
)

type rule struct {
	need need
	perm policy.Perm
}

// rules lists every procedure Nexus serves and what it needs. A procedure
// missing here is refused: default deny.
var rules = map[string]rule{
	nexusv1connect.OperatorServiceInitProcedure:   {need: adminSVID},
	nexusv1connect.OperatorServiceUnsealProcedure: {need: adminSVID},
	nexusv1connect.OperatorServiceStatusProcedure: {need: adminSVID},
	nexusv1connect.OperatorServiceLoginProcedure:  {need: adminSVID},
	nexusv1connect.OperatorServiceLogoutProcedure: {need: adminToken},
	nexusv1connect.OperatorServiceSealProcedure:   {need: adminToken},
	nexusv1connect.OperatorServiceRekeyProcedure:  {need: adminToken},

	nexusv1connect.OperatorServiceRotateRootKeyProcedure:      {need: adminToken},
	nexusv1connect.OperatorServiceRewrapDataKeysProcedure:     {need: adminToken},
	nexusv1connect.OperatorServiceDestroyOldRootKeysProcedure: {need: adminToken},
	nexusv1connect.OperatorServiceRewrapSecretsProcedure:      {need: adminToken},
	nexusv1connect.OperatorServiceRetireDataKeysProcedure:     {need: adminToken},
	// Backups hold every sealed row; restore runs on an uninitialised
	// Nexus, where no token can exist (like Init), and needs the
	// credentials of the backup's time.
	nexusv1connect.OperatorServiceBackupProcedure:       {need: adminToken},
	nexusv1connect.OperatorServiceVerifyBackupProcedure: {need: adminToken},
	nexusv1connect.OperatorServiceRestoreProcedure:      {need: adminSVID},

	nexusv1connect.PolicyServicePutPolicyProcedure:    {need: adminToken},
	nexusv1connect.PolicyServiceGetPolicyProcedure:    {need: adminToken},
	nexusv1connect.PolicyServiceListPoliciesProcedure: {need: adminToken},
	nexusv1connect.PolicyServiceDeletePolicyProcedure: {need: adminToken},
	nexusv1connect.PolicyServiceCheckAccessProcedure:  {need: adminToken},

	nexusv1connect.AuditServiceListAuditRecordsProcedure: {need: adminToken},
	nexusv1connect.AuditServiceVerifyAuditTrailProcedure: {need: adminToken},
	nexusv1connect.AuditServicePruneAuditTrailProcedure:  {need: adminToken},

	nexusv1connect.SecretServiceGetSecretProcedure:            {need: secretAccess, perm: policy.Read},
	nexusv1connect.SecretServiceListSecretsProcedure:          {need: listAccess, perm: policy.List},
	nexusv1connect.SecretServicePutSecretProcedure:            {need: secretAccess, perm: policy.Write},
	nexusv1connect.SecretServicePatchSecretProcedure:          {need: secretAccess, perm: policy.Read | policy.Write},
	nexusv1connect.SecretServiceRollbackSecretProcedure:       {need: secretAccess, perm: policy.Read | policy.Write},
	nexusv1connect.SecretServiceDeleteSecretProcedure:         {need: secretAccess, perm: policy.Delete},
	nexusv1connect.SecretServiceUndeleteSecretProcedure:       {need: secretAccess, perm: policy.Delete},
	nexusv1connect.SecretServiceDestroySecretProcedure:        {need: secretAccess, perm: policy.Destroy},
	nexusv1connect.SecretServiceGetSecretMetadataProcedure:    {need: secretAccess, perm: policy.Meta},
	nexusv1connect.SecretServiceUpdateSecretMetadataProcedure: {need: secretAccess, perm: policy.Meta},
	nexusv1connect.SecretServiceDeleteSecretMetadataProcedure: {need: secretAccess, perm: policy.Meta | policy.Destroy},
	nexusv1connect.SecretServiceWatchSecretsProcedure:         {need: watchAccess, perm: policy.Read},
}

// decide applies the rules to c's request; on success it says why the
// request is allowed. It fills in what c learns on the way: whether the
// caller is an admin, and the admin token it sent.
func (s *Server) decide(ctx context.Context, c *call, procedure string, header http.Header, msg any) (string, error) {
	caller := c.caller
	if caller.IsZero() {
		return "", fault.New(fault.Unauthenticated, "no client SVID")
	}
	r, ok := rules[procedure]
	if !ok {
		return "", fault.New(fault.PermissionDenied, "%s may not call %s", caller, procedure)
	}
	tok, hasToken := bearer(header)
	isAdmin := s.admins[caller]
	if hasToken && !isAdmin {
		return "", fault.New(fault.PermissionDenied,
			"%s is not an admin SPIFFE ID: an admin token is accepted only together with an admin SVID", caller)
	}
	c.admin, c.token = isAdmin, tok

	verifyAdmin := func() (string, error) {
		if !hasToken {
			// Not initialised or sealed: say that first, it is what the
			// admin must fix before a login can help.
			if err := s.keeper.Ready(ctx); err != nil {
				return "", err
			}
			return "", fault.New(fault.Unauthenticated, "admin token required: run `spike login`")
		}
		if err := s.tokens.Verify(ctx, tok, caller); err != nil {
			return "", err
		}
		return "admin token " + token.ID(tok), nil
	}
	switch {
	case r.need == adminSVID || r.need == adminToken:
		if !isAdmin {
			return "", fault.New(fault.PermissionDenied, "%s may not call %s: it is not an admin SPIFFE ID", caller, procedure)
		}
		if r.need == adminToken {
			reason, err := verifyAdmin()
			return reason, err
		}
		return "admin SVID", nil
	case isAdmin:
		reason, err := verifyAdmin()
		return reason, err
	}

	// A workload: policies decide. A malformed path is refused as such
	// first (InvalidArgument, a static check that reveals nothing).
	if err := validTarget(r, msg); err != nil {
		return "", err
	}
	// Changing max_versions can delete history for good: it also needs
	// destroy.
	if m, ok := msg.(*nexusv1.UpdateSecretMetadataRequest); ok && m.MaxVersions != nil {
		r.perm |= policy.Destroy
	}
	// Policies can only be read when unsealed, and are trusted only while
	// the cache is known to be current (fail closed).
	if err := s.keeper.Ready(ctx); err != nil {
		return "", err
	}
	if err := s.policies.EnsureFresh(ctx); err != nil {
		return "", err
	}
	set := s.policies.Set()
	if r.need == watchAccess {
		dir := watchDir(msg)
		if !set.MayUnder(caller, dir, r.perm) {
			return "", fault.New(fault.PermissionDenied, "%s may not watch %q: no policy grants it %s on a path there", caller, dir, r.perm)
		}
		return "policies allow reading under " + strconv.Quote(dir), nil
	}
	if r.need == listAccess {
		dir := listDir(msg)
		if !set.MayList(caller, dir) {
			return "", fault.New(fault.PermissionDenied, "%s may not list %q: no policy grants it", caller, dir)
		}
		return "policies allow listing under " + strconv.Quote(dir), nil
	}
	path := ""
	if m, ok := msg.(interface{ GetPath() string }); ok {
		path = m.GetPath()
	}
	if got := set.Allowed(caller, path); !got.Has(r.perm) {
		return "", fault.New(fault.PermissionDenied, "%s may not %s %s: no policy grants %s",
			caller, verb(procedure), path, (r.perm &^ got).String())
	}
	var names []string
	for _, g := range set.Grants(caller, path) {
		if g.Perms&r.perm != 0 {
			names = append(names, g.Policy)
		}
	}
	return "policies " + strings.Join(names, ","), nil
}

// validTarget checks the path or prefix a workload's request names.
func validTarget(r rule, msg any) error {
	if r.need == watchAccess {
		if m, ok := msg.(*nexusv1.WatchSecretsRequest); ok {
			return secret.ValidatePrefix(m.GetPrefix())
		}
		return fault.New(fault.PermissionDenied, "this request names no prefix")
	}
	if r.need == listAccess {
		if m, ok := msg.(*nexusv1.ListSecretsRequest); ok {
			return secret.ValidatePrefix(m.GetPrefix())
		}
		return nil
	}
	if m, ok := msg.(interface{ GetPath() string }); ok {
		return secret.ValidatePath(m.GetPath())
	}
	return fault.New(fault.PermissionDenied, "this request names no secret path")
}

// target is what a request is about, for the audit trail.
func target(msg any) string {
	switch m := msg.(type) {
	case interface{ GetPath() string }:
		return m.GetPath()
	case interface{ GetPrefix() string }:
		return m.GetPrefix()
	case interface{ GetName() string }:
		return "policy:" + m.GetName()
	case interface{ GetPolicy() *nexusv1.Policy }:
		return "policy:" + m.GetPolicy().GetName()
	}
	return ""
}

// verb names what a procedure does, for error messages.
func verb(procedure string) string {
	name := procedure[strings.LastIndexByte(procedure, '/')+1:]
	name = strings.TrimSuffix(strings.TrimSuffix(name, "Metadata"), "Secret")
	return strings.ToLower(name)
}

// bearer returns the admin token of an "Authorization: Bearer" header.
func bearer(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	token, ok := strings.CutPrefix(v, "Bearer ")
	token = strings.TrimSpace(token)
	return token, ok && token != ""
}

// withheld is the message of a response withheld because its audit record
// could not be written: why, as the trail says it (it names the database
// when the database is the cause), never the request's own result.
func withheld(auditErr error) string {
	msg := "audit log unavailable"
	var fe *fault.Error
	if errors.As(auditErr, &fe) {
		msg = fe.Msg
	}
	return msg + "; the response was withheld"
}

// codes maps domain error codes to Connect codes: the one place where this
// translation happens.
var codes = map[fault.Code]connect.Code{
	fault.Invalid:            connect.CodeInvalidArgument,
	fault.NotFound:           connect.CodeNotFound,
	fault.FailedPrecondition: connect.CodeFailedPrecondition,
	fault.PermissionDenied:   connect.CodePermissionDenied,
	fault.Unauthenticated:    connect.CodeUnauthenticated,
	fault.TooMany:            connect.CodeResourceExhausted,
	fault.Unavailable:        connect.CodeUnavailable,
	fault.Aborted:            connect.CodeAborted,
	fault.Unknown:            connect.CodeUnknown,
	fault.DataLoss:           connect.CodeDataLoss,
	fault.OutOfRange:         connect.CodeOutOfRange,
}

// reasons maps domain reasons to the reasons of the ErrorDetail sent with
// the error, so that callers tell errors of one code apart without reading
// the message.
var reasons = map[fault.Reason]nexusv1.ErrorDetail_Reason{
	fault.CASMismatch:    nexusv1.ErrorDetail_REASON_CAS_MISMATCH,
	fault.CASRequired:    nexusv1.ErrorDetail_REASON_CAS_REQUIRED,
	fault.Sealed:         nexusv1.ErrorDetail_REASON_SEALED,
	fault.NotInitialised: nexusv1.ErrorDetail_REASON_NOT_INITIALISED,
}

// toConnect converts err into a Connect error whose message is safe for the
// caller, with an ErrorDetail when the domain error has a reason. Causes
// are logged, never returned.
func (s *Server) toConnect(err error, requestID string) error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		if fe.Err != nil {
			s.log.Warn("request failed", "request_id", requestID, "error", fe.Msg, "cause", fe.Err.Error())
		}
		ce := connect.NewError(codes[fe.Code], errors.New(fe.Msg))
		if r, ok := reasons[fe.Reason]; ok {
			if d, derr := connect.NewErrorDetail(&nexusv1.ErrorDetail{Reason: r}); derr == nil {
				ce.AddDetail(d)
			}
		}
		return ce
	}
	// Any other error, a Connect error from a call to Keeper among them,
	// is not the caller's business: only its cancellation or deadline is.
	switch {
	case errors.Is(err, context.Canceled), connect.CodeOf(err) == connect.CodeCanceled:
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded), connect.CodeOf(err) == connect.CodeDeadlineExceeded:
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("request timed out"))
	}
	s.log.Error("internal error", "request_id", requestID, "error", err.Error())
	return connect.NewError(connect.CodeInternal, errors.New("internal error (request id "+requestID+")"))
}

// rpcLabel is a procedure's metrics label: itself when Nexus serves it
// (it is in rules), metrics.Other otherwise, so that the label's values stay
// a fixed set.
func rpcLabel(procedure string) string {
	if _, ok := rules[procedure]; ok {
		return procedure
	}
	return metrics.Other
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
