package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/shared/mtls"
)

// observeRequests logs one line per request: request id, caller,
// procedure, code and duration, and counts the request in m. It never logs
// messages, which carry passwords and keys.
func observeRequests(log *slog.Logger, m *metrics) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			caller := ""
			if id, ok := mtls.Caller(ctx); ok {
				caller = id.String()
			}
			code := "ok"
			level := slog.LevelInfo
			if err != nil {
				code = connect.CodeOf(err).String()
				level = slog.LevelWarn
			}
			elapsed := time.Since(start)
			log.LogAttrs(ctx, level, "request",
				slog.String("request_id", requestID()),
				slog.String("caller", caller),
				slog.String("procedure", req.Spec().Procedure),
				slog.String("code", code),
				slog.Duration("duration", elapsed),
			)
			m.observe(req.Spec().Procedure, code, elapsed)
			return resp, err
		}
	}
}

// requestID returns a random identifier for one request's log line.
func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
