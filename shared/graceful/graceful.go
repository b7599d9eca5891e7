// Package graceful runs an HTTP server until its context is done, then
// shuts it down gracefully: in-flight requests finish, new ones are refused.
package graceful

import (
	"context"
	"errors"
	"net/http"
	"time"
)

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
