package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
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

// check authorizes a call to procedure and returns the context the
// handler runs with.
func (a authorizer) check(ctx context.Context, procedure string, header http.Header, msg any) (context.Context, error) {
	caller, ok := mtls.Caller(ctx)
	if !ok {
		return ctx, fault.New(fault.Unauthenticated, "no client SVID")
	}
	r, ok := rules[procedure]
	if !ok {
		return ctx, fault.New(fault.PermissionDenied, "%s may not call %s", caller, procedure)
	}
	token, hasToken := bearer(header)
	isAdmin := a.admins[caller]
	if hasToken && !isAdmin {
		return ctx, fault.New(fault.PermissionDenied,
			"%s is not an admin SPIFFE ID: an admin token is accepted only together with an admin SVID", caller)
	}
	p := principal{id: caller, admin: isAdmin, token: token}
	ctx = context.WithValue(ctx, principalKey{}, p)

	verifyAdmin := func() error {
		if !hasToken {
			// Not initialised or sealed: say that first, it is what the
			// admin must fix before a login can help.
			if err := a.keys.Ready(ctx); err != nil {
				return err
			}
			return fault.New(fault.Unauthenticated, "admin token required: run `spike login`")
		}
		return a.tokens.Verify(ctx, token, caller)
	}
	switch {
	case r.need == adminSVID || r.need == adminToken:
		if !isAdmin {
			return ctx, fault.New(fault.PermissionDenied, "%s may not call %s: it is not an admin SPIFFE ID", caller, procedure)
		}
		if r.need == adminToken {
			return ctx, verifyAdmin()
		}
		return ctx, nil
	case isAdmin:
		return ctx, verifyAdmin()
	}

	// A workload: policies decide. They can only be read when unsealed.
	if err := a.keys.Ready(ctx); err != nil {
		return ctx, err
	}
	set := a.policies.Set()
	if r.need == listAccess {
		dir := listDir(msg)
		if !set.MayList(caller, dir) {
			return ctx, fault.New(fault.PermissionDenied, "%s may not list %q: no policy grants it", caller, dir)
		}
		return ctx, nil
	}
	path := ""
	if m, ok := msg.(interface{ GetPath() string }); ok {
		path = m.GetPath()
	}
	if got := set.Allowed(caller, path); !got.Has(r.perm) {
		return ctx, fault.New(fault.PermissionDenied, "%s may not %s %s: no policy grants %s",
			caller, verb(procedure), path, (r.perm &^ got).String())
	}
	return ctx, nil
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

// logRequests logs one line per request: id, caller, procedure, code and
// duration. It never logs payloads. Unexpected errors are logged in full
// here and replaced by a generic message for the caller.
func (s *Server) logRequests() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			ctx, cancel := context.WithTimeout(ctx, maxRequestDuration)
			defer cancel()
			id := newRequestID()
			caller, _ := mtls.Caller(ctx)
			resp, err := next(ctx, req)
			err = s.toConnect(err, id)
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
			}
			s.log.Info("request",
				"request_id", id,
				"caller", caller.String(),
				"procedure", req.Spec().Procedure,
				"peer", req.Peer().Addr,
				"code", code,
				"duration_ms", float64(time.Since(start).Microseconds())/1000)
			if resp != nil {
				resp.Header().Set("Spike-Request-Id", id)
			}
			return resp, err
		}
	}
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
