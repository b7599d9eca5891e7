package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/spike-dev/spike/shared/mtls"
)

// healthPrefix is the gRPC health service: probes are not audited.
const healthPrefix = "/grpc.health.v1.Health/"

type observedKey struct{}

// markObserved tells auditRefused that the request reached the pipeline
// (unary), which records it. The flag rides in the request's context
// because the HTTP layer and the pipeline share nothing else; whether a
// request is recorded never depends on it: unary records every request it
// sees, and auditRefused only adds records for those it did not.
func markObserved(ctx context.Context) {
	if seen, ok := ctx.Value(observedKey{}).(*atomic.Bool); ok {
		seen.Store(true)
	}
}

// auditRefused records the requests that never reach the pipeline: Connect
// refuses a body that does not decode, is too large or comes with the wrong
// codec before any handler runs, and the mux answers 404 for unknown
// procedures. Such a request did nothing; its record says how it ended. The
// response has already left, so a failed write is logged.
func (s *Server) auditRefused(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := new(atomic.Bool)
		ctx := context.WithValue(r.Context(), observedKey{}, seen)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		if seen.Load() || strings.HasPrefix(r.URL.Path, healthPrefix) {
			return
		}
		caller, _ := mtls.Caller(ctx)
		id := newRequestID()
		e := s.trail.Begin(ctx, id, caller.String(), r.RemoteAddr, r.URL.Path)
		e.Deny(fmt.Sprintf("refused before it was decoded: HTTP %d", rec.code))
		if err := s.trail.Finish(ctx, e, fmt.Sprintf("http_%d", rec.code)); err != nil {
			s.log.Error("audit record of a refused request not written", "request_id", id, "error", err.Error())
		}
	})
}

// statusRecorder remembers the status code a handler sent.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Flush passes flushes through, for streaming responses.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
