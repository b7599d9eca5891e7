// Package rpcclient builds the HTTP client that SPIKE programs and workloads
// use for Connect RPCs over SPIFFE mTLS, and says honestly what happened to
// a request that got no answer.
//
// Every request gets an Idempotency-Key header (the time it was made, then
// a random 128-bit value, unless the caller set one), and every retry of it carries the same key, so
// a server that honours the key applies a request at most once however often
// it arrives.
//
// The client retries only what is safe to retry:
//   - a failure to connect: nothing was sent;
//   - HTTP 503 (Connect's Unavailable): the server says nothing happened;
//   - a connection that broke after the request was sent (reset, EOF, GOAWAY,
//     stream reset), only when the request carries an idempotency key, since
//     the server then answers a repeat with the first outcome.
//
// It never retries a TLS or authorization failure.
//
// When an attempt may have reached the server (its headers were written and
// the server did not refuse the TLS handshake) and the request still ends in
// failure, the outcome is unknown: the error is a *connect.Error with
// CodeUnknown wrapping a *MaybeSentError, never Unavailable ("nothing
// happened") or Canceled. Only the caller's own context is an exception: when
// it is done the error stays Canceled or DeadlineExceeded. Interceptor
// refines the code per procedure: Unavailable for a procedure without side
// effects, since a read has nothing to apply. An answer that a later attempt
// does get (Nexus replaying the first outcome, or any refusal) is returned
// as it is.
//
//	httpClient := rpcclient.New(tlsConf)
//	secrets := nexusv1connect.NewSecretServiceClient(httpClient, url,
//		connect.WithInterceptors(rpcclient.Interceptor()))
//
// Retrying after sending relies on the server honouring the key: a Nexus
// that ignored it could apply a write twice. Keeper ignores it, which is
// harmless: its calls have no lasting effect when repeated.
package rpcclient

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Options tune the retry behaviour. The zero value gives the defaults.
type Options struct {
	// MaxRetries is the number of retries after the first attempt
	// (default 4; NoRetries for none).
	MaxRetries int
	// MinWait and MaxWait bound the exponential backoff (default 100ms, 2s).
	MinWait, MaxWait time.Duration
	// HTTP1 speaks HTTP/1.1 only, one connection per concurrent call,
	// instead of HTTP/2 (for `make bench`, which measures both, and for
	// proxies that do not speak HTTP/2).
	HTTP1 bool
}

// NoRetries as Options.MaxRetries makes one attempt only: for callers that
// have somewhere else to go (another Keeper) rather than a reason to wait.
const NoRetries = -1

// New returns an HTTP/2 client (HTTP/1.1 with Options.HTTP1) over tlsConf that sets an idempotency key on
// every request and retries as the package documentation describes, with
// exponential backoff. It uses a copy of tlsConf, so clients built from one
// configuration can run side by side.
func New(tlsConf *tls.Config, opts ...Options) *http.Client {
	o := Options{MaxRetries: 4, MinWait: 100 * time.Millisecond, MaxWait: 2 * time.Second}
	if len(opts) > 0 {
		if opts[0].MaxRetries != 0 {
			o.MaxRetries = max(opts[0].MaxRetries, 0)
		}
		if opts[0].MinWait > 0 {
			o.MinWait = opts[0].MinWait
		}
		if opts[0].MaxWait > 0 {
			o.MaxWait = opts[0].MaxWait
		}
		o.HTTP1 = opts[0].HTTP1
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf.Clone(), // the transport adds its ALPN protocols to it
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
	}
	if o.HTTP1 {
		// Offer only HTTP/1.1 in ALPN, whatever tlsConf offered.
		transport.TLSClientConfig.NextProtos = []string{"http/1.1"}
		transport.ForceAttemptHTTP2 = false
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: &retrying{attempt: &http.Client{Transport: transport}, conns: transport, opts: o}}
}
