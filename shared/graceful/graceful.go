// Package graceful makes SPIKE's HTTP servers, with limits on slow and
// stuck clients, and runs them until their context is done, then shuts
// them down gracefully: in-flight requests finish, new ones are refused.
package graceful

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// The limits every SPIKE server shares: a client has this long to send its
// request headers, and an idle connection is closed after this long.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Limits are what differs between servers: how long a whole request may
// take to read and its response to write, and how large its headers may be.
type Limits struct {
	Read, Write    time.Duration
	MaxHeaderBytes int
}

// NewServer returns an HTTP server for h with the shared limits and l. Its
// own errors (refused TLS handshakes among them) go to log at level warn;
// nil discards them.
func NewServer(h http.Handler, l Limits, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// ShutdownTimeout bounds how long a shutdown waits for in-flight requests.
const ShutdownTimeout = 10 * time.Second

// Serve runs serve (srv.Serve or srv.ServeTLS on a listener) until ctx is
// done, then shuts srv down. It returns nil after a clean shutdown and
// serve's error if serving stopped by itself.
func Serve(ctx context.Context, srv *http.Server, serve func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
