package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/shared/mtls"
)

// authorize admits admin callers to every procedure and refuses everyone
// else. Default deny: a procedure that is not explicitly opened to
// workloads is admin-only.
func (s *Server) authorize() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			caller, ok := mtls.Caller(ctx)
			if !ok {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no client SVID"))
			}
			if !s.admins[caller] {
				return nil, connect.NewError(connect.CodePermissionDenied,
					errors.New(caller.String()+" may not call "+req.Spec().Procedure))
			}
			return next(ctx, req)
		}
	}
}

// logRequests logs one line per request: id, caller, procedure, code and
// duration. It never logs payloads. Unexpected errors are logged in full
// here and replaced by a generic message for the caller.
func (s *Server) logRequests() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
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
