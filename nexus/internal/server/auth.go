package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

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
}

// principal is who an authorized request runs as.
type principal struct {
	id    spiffeid.ID
	admin bool
	// token is the admin token the request carried, if any.
	token string
}

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// authorizer applies rules to every request, unary and streaming alike.
type authorizer struct{ *Server }

var _ connect.Interceptor = authorizer{}

// check authorizes a call to procedure, records the decision in the
// request's audit entry, and returns the context the handler runs with.
func (a authorizer) check(ctx context.Context, procedure string, header http.Header, msg any) (context.Context, error) {
	ctx, reason, err := a.decide(ctx, procedure, header, msg)
	if e := audit.FromContext(ctx); e != nil {
		e.SetTarget(target(msg))
		if err != nil {
			e.Deny(err.Error())
		} else {
			e.Allow(reason)
		}
	}
	return ctx, err
}

// decide applies the rules; on success it says why the request is allowed.
func (a authorizer) decide(ctx context.Context, procedure string, header http.Header, msg any) (context.Context, string, error) {
	caller, ok := mtls.Caller(ctx)
	if !ok {
		return ctx, "", fault.New(fault.Unauthenticated, "no client SVID")
	}
	r, ok := rules[procedure]
	if !ok {
		return ctx, "", fault.New(fault.PermissionDenied, "%s may not call %s", caller, procedure)
	}
	token, hasToken := bearer(header)
	isAdmin := a.admins[caller]
	if hasToken && !isAdmin {
		return ctx, "", fault.New(fault.PermissionDenied,
			"%s is not an admin SPIFFE ID: an admin token is accepted only together with an admin SVID", caller)
	}
	p := principal{id: caller, admin: isAdmin, token: token}
	ctx = context.WithValue(ctx, principalKey{}, p)

	verifyAdmin := func() (string, error) {
		if !hasToken {
			// Not initialised or sealed: say that first, it is what the
			// admin must fix before a login can help.
			if err := a.keys.Ready(ctx); err != nil {
				return "", err
			}
			return "", fault.New(fault.Unauthenticated, "admin token required: run `spike login`")
		}
		if err := a.tokens.Verify(ctx, token, caller); err != nil {
			return "", err
		}
		return "admin token " + access.TokenID(token), nil
	}
	switch {
	case r.need == adminSVID || r.need == adminToken:
		if !isAdmin {
			return ctx, "", fault.New(fault.PermissionDenied, "%s may not call %s: it is not an admin SPIFFE ID", caller, procedure)
		}
		if r.need == adminToken {
			reason, err := verifyAdmin()
			return ctx, reason, err
		}
		return ctx, "admin SVID", nil
	case isAdmin:
		reason, err := verifyAdmin()
		return ctx, reason, err
	}

	// A workload: policies decide. A malformed path is refused as such
	// first (InvalidArgument, a static check that reveals nothing).
	if err := validTarget(r, msg); err != nil {
		return ctx, "", err
	}
	// Changing max_versions can delete history for good: it also needs
	// destroy.
	if m, ok := msg.(*nexusv1.UpdateSecretMetadataRequest); ok && m.MaxVersions != nil {
		r.perm |= policy.Destroy
	}
	// Policies can only be read when unsealed, and are trusted only while
	// the cache is known to be current (fail closed).
	if err := a.keys.Ready(ctx); err != nil {
		return ctx, "", err
	}
	if err := a.policies.EnsureFresh(ctx); err != nil {
		return ctx, "", err
	}
	set := a.policies.Set()
	if r.need == listAccess {
		dir := listDir(msg)
		if !set.MayList(caller, dir) {
			return ctx, "", fault.New(fault.PermissionDenied, "%s may not list %q: no policy grants it", caller, dir)
		}
		return ctx, "policies allow listing under " + strconv.Quote(dir), nil
	}
	path := ""
	if m, ok := msg.(interface{ GetPath() string }); ok {
		path = m.GetPath()
	}
	if got := set.Allowed(caller, path); !got.Has(r.perm) {
		return ctx, "", fault.New(fault.PermissionDenied, "%s may not %s %s: no policy grants %s",
			caller, verb(procedure), path, (r.perm &^ got).String())
	}
	var names []string
	for _, g := range set.Grants(caller, path) {
		if g.Perms&r.perm != 0 {
			names = append(names, g.Policy)
		}
	}
	return ctx, "policies " + strings.Join(names, ","), nil
}

// validTarget checks the path or prefix a workload's request names.
func validTarget(r rule, msg any) error {
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

// WrapUnary authorizes a unary call before its handler runs.
func (a authorizer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.check(ctx, req.Spec().Procedure, req.Header(), req.Any())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves outgoing streams alone: Nexus's handlers make
// no streaming calls.
func (a authorizer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler refuses streaming calls: none is in the rules yet.
func (a authorizer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.check(ctx, conn.Spec().Procedure, conn.RequestHeader(), nil)
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// observe wraps every request: it caps its duration, starts its audit
// record, makes sure the record is committed before the response leaves
// (failing the request with Unavailable when it cannot be: fail closed),
// logs one line: id, caller, procedure, code, duration, and counts the
// request in the metrics. It never logs or audits payloads. Unexpected
// errors are logged in full here and replaced by a generic message for the
// caller.
func (s *Server) observe() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			markObserved(ctx)
			ctx, cancel := context.WithTimeout(ctx, maxRequestDuration)
			defer cancel()
			id := newRequestID()
			caller, _ := mtls.Caller(ctx)
			entry := s.trail.Begin(ctx, id, caller.String(), req.Peer().Addr, req.Spec().Procedure)
			resp, err := next(audit.WithEntry(ctx, entry), req)
			err = s.toConnect(err, id)
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			if aerr := s.trail.Finish(ctx, entry, code); aerr != nil {
				s.log.Error("audit record not written: response withheld", "request_id", id, "error", aerr.Error())
				resp, err = nil, connect.NewError(connect.CodeUnavailable,
					errors.New("audit log unavailable: the response was withheld"))
				code = connect.CodeUnavailable.String()
			}
			elapsed := time.Since(start)
			s.log.Info("request",
				"request_id", id,
				"caller", caller.String(),
				"procedure", req.Spec().Procedure,
				"peer", req.Peer().Addr,
				"code", code,
				"duration_ms", float64(elapsed.Microseconds())/1000)
			s.metrics.ObserveRequest(rpcLabel(req.Spec().Procedure), code, elapsed)
			if resp != nil {
				resp.Header().Set("Spike-Request-Id", id)
			}
			if ce := new(connect.Error); errors.As(err, &ce) {
				ce.Meta().Set("Spike-Request-Id", id)
			}
			return resp, err
		}
	}
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
