package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/mtls"
)

// maxRequestDuration bounds every request, whatever deadline the client
// sent (or did not send), so a stuck call cannot hold a database connection.
const maxRequestDuration = 30 * time.Second

// admins admits admin callers to every procedure and refuses everyone
// else, for unary and streaming procedures alike. Default deny: a procedure
// that is not explicitly opened to workloads is admin-only.
type admins map[spiffeid.ID]bool

var _ connect.Interceptor = admins(nil)

func (a admins) check(ctx context.Context, procedure string) error {
	caller, ok := mtls.Caller(ctx)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("no client SVID"))
	}
	if !a[caller] {
		return connect.NewError(connect.CodePermissionDenied,
			errors.New(caller.String()+" may not call "+procedure))
	}
	return nil
}

// WrapUnary checks the caller before a unary handler runs.
func (a admins) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := a.check(ctx, req.Spec().Procedure); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient leaves outgoing streams alone: Nexus's handlers make
// no streaming calls.
func (a admins) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks the caller before a streaming handler runs.
func (a admins) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := a.check(ctx, conn.Spec().Procedure); err != nil {
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
