// Package mtls builds SPIFFE mutual-TLS configurations and HTTP servers, and
// carries the caller's SPIFFE ID from the TLS handshake to request handlers.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/spike-dev/spike/shared/graceful"
	"github.com/spike-dev/spike/shared/svid"
)

// ServerConfig returns a TLS config that presents src's SVID, requires a
// client SVID from src's trust bundles and admits only clients that authorize
// accepts. TLS 1.3 only; ALPN offers HTTP/2 first.
func ServerConfig(src *svid.Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSServerConfig(src, src, authorize)
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// ClientConfig returns a TLS config that presents src's SVID and accepts
// only servers that authorize accepts. A server refused by it fails the
// handshake with a *ServerRefusedError.
func ClientConfig(src *svid.Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSClientConfig(src, src, authorize)
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{"h2"}
	// Every connection verifies the server's SVID: no session resumption.
	c.SessionTicketsDisabled = true
	if verify := c.VerifyPeerCertificate; verify != nil {
		c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			if err := verify(raw, chains); err != nil {
				return &ServerRefusedError{Err: err}
			}
			return nil
		}
	}
	return c
}

// ServerRefusedError is a TLS handshake that this client ended because the
// server's certificate is not an SVID it accepts: not signed by the trust
// bundle, or another SPIFFE ID than the one expected. Nothing was sent;
// trying again reaches the same server: it is a configuration mistake (a
// wrong URL, bundle or expected ID), not an outage.
type ServerRefusedError struct{ Err error }

func (e *ServerRefusedError) Error() string {
	return "the server's certificate is not an SVID this client accepts (wrong URL, trust bundle or expected SPIFFE ID?): " + e.Err.Error()
}

func (e *ServerRefusedError) Unwrap() error { return e.Err }

type callerKey struct{}

// WithCaller puts the SPIFFE ID of the TLS peer into each request's context.
// Requests without a verified client SVID are refused with 401.
func WithCaller(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "client SVID required", http.StatusUnauthorized)
			return
		}
		id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			http.Error(w, "client certificate is not an SVID", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(WithCallerID(r.Context(), id)))
	})
}

// WithCallerID returns a context carrying id as the caller. Servers get it
// from WithCaller; tests may set it directly.
func WithCallerID(ctx context.Context, id spiffeid.ID) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// Caller returns the caller's SPIFFE ID set by WithCaller.
func Caller(ctx context.Context) (spiffeid.ID, bool) {
	id, ok := ctx.Value(callerKey{}).(spiffeid.ID)
	return id, ok
}

// limits of the API servers. Requests are small unary RPCs: anything slower
// than this is a stuck or hostile client.
var limits = graceful.Limits{Read: 30 * time.Second, Write: 60 * time.Second, MaxHeaderBytes: 64 << 10}

// NewServer returns an HTTP server for h over tlsConf, with timeouts and
// header limits set and WithCaller applied. The server's own errors (refused
// TLS handshakes among them) go to log at level warn; nil discards them.
func NewServer(h http.Handler, tlsConf *tls.Config, log *slog.Logger) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	srv := graceful.NewServer(WithCaller(h), limits, log)
	srv.TLSConfig = tlsConf
	srv.Protocols = p
	return srv
}

// Serve serves TLS on ln until ctx is done, then shuts down gracefully.
// It returns nil after a clean shutdown.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	return graceful.Serve(ctx, srv, func() error { return srv.ServeTLS(ln, "", "") })
}
