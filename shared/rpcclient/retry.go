package rpcclient

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-retryablehttp"
)

// IdempotencyKeyHeader is the HTTP header that carries a request's
// idempotency key: 16 to 64 characters of [A-Za-z0-9_-]. A server that
// sees a key again from the same caller answers with the first outcome
// instead of applying the request again.
const IdempotencyKeyHeader = "Idempotency-Key"

// noReplayHeader is how Interceptor tells the transport that a request must
// not be sent twice; it never leaves the client.
const noReplayHeader = "X-Spike-Rpcclient-No-Replay"

// MaybeSentError reports that a request may have reached the server and
// that no answer came back: an attempt's connection broke after the request
// was written, and no later attempt got a definitive answer. Whether the
// server applied the request is unknown.
//
// Its errors are deliberately not returned by Unwrap: a transport sentinel
// in them (io.EOF, a context error of the transport) must not be mistaken
// for the outcome of the request.
type MaybeSentError struct {
	// Attempts is how many times the request was tried.
	Attempts int
	// Broken is the first failure after a request was written: the reason
	// the outcome is unknown.
	Broken error
	// Last is the failure of the last attempt: a transport error, or the
	// status of a 503. It is Broken when no attempt followed it.
	Last error
}

func (e *MaybeSentError) Error() string {
	msg := fmt.Sprintf("the connection broke after the request was sent (%v): it may or may not have been applied", e.Broken)
	if e.Attempts > 1 {
		msg += fmt.Sprintf("; %d attempts, the last: %v", e.Attempts, e.Last)
	}
	return msg
}

// retrying is the client's round tripper: it gives each request its
// idempotency key and runs its attempts through retryablehttp. Through it
// http.Client.CloseIdleConnections also reaches the connections: a program
// that stops closes them instead of leaving its peers to time them out.
type retrying struct {
	attempt *http.Client // one attempt, on conns
	conns   *http.Transport
	opts    Options
}

// CloseIdleConnections closes the connections that carry no request.
func (r *retrying) CloseIdleConnections() { r.conns.CloseIdleConnections() }

// RoundTrip sends req, retrying as the package documentation describes.
// It does not modify req: a request that needs a key is cloned.
func (r *retrying) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.Header.Get(noReplayHeader) != "":
		// Not to be sent twice: no key, so no retry once it may have
		// been sent (see Interceptor).
		req = req.Clone(req.Context())
		req.Header.Del(noReplayHeader)
		req.Header.Del(IdempotencyKeyHeader)
	case req.Header.Get(IdempotencyKeyHeader) == "":
		req = req.Clone(req.Context())
		req.Header.Set(IdempotencyKeyHeader, newIdempotencyKey())
	}
	c := &call{keyed: req.Header.Get(IdempotencyKeyHeader) != ""}
	// The trace tells the attempts that wrote their request (and so may
	// have reached the server) from those that never got that far.
	traced := req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn:      func(info httptrace.GotConnInfo) { c.reused.Store(info.Reused) },
		WroteHeaders: func() { c.wrote.Store(true) },
	}))
	rreq, err := retryablehttp.FromRequest(traced)
	if err != nil {
		return nil, err
	}
	// A retry client per request, so that its retry check is a method of
	// this request's state: nothing is shared between requests or carried
	// in the context but the trace.
	client := &retryablehttp.Client{
		HTTPClient:   r.attempt,
		RetryMax:     r.opts.MaxRetries,
		RetryWaitMin: r.opts.MinWait,
		RetryWaitMax: r.opts.MaxWait,
		CheckRetry:   c.checkRetry,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := client.Do(rreq)
	return c.outcome(req.Context(), resp, withoutURL(err))
}

// call is one logical request: the state its attempts share.
type call struct {
	// keyed says that the request carries an idempotency key.
	keyed bool
	// wrote is set when the current attempt has written its headers, and
	// reused when it went over a connection that carried a request before;
	// the retry check reads and clears both.
	wrote, reused atomic.Bool
	// attempts counts the attempts made.
	attempts int
	// broken is the first failure of an attempt that may have reached the
	// server; nil while none did.
	broken error
}

// checkRetry is the retry policy, called by retryablehttp after each
// attempt: retry when nothing was sent (a failure to connect), when the
// server answered 503 (nothing happened), or when the connection broke
// after sending and the request carries an idempotency key. A TLS
// handshake that fails (unknown authority, wrong SPIFFE ID) is final.
//
// A request may have reached the server once its headers were written,
// unless the server refused the connection: it sent a TLS alert, or the
// request could not be written on a new connection. Under TLS 1.3 a client
// learns that its certificate was refused only after it wrote its request,
// and the server may close the connection before that write: then the
// client sees a failed write, not the alert. A failed write means the
// request did not get through whole, so the server could not act on it.
func (c *call) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	c.attempts++
	wrote, reused := c.wrote.Swap(false), c.reused.Swap(false)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err == nil {
		// A request sent without a key (not to be replayed) is not sent
		// again even after a 503: its caller decides.
		return resp.StatusCode == http.StatusServiceUnavailable && c.keyed, nil
	}
	if !wrote || isHandshakeRefusal(err) || (!reused && isWriteError(err)) {
		return isDialError(err), nil
	}
	if c.broken == nil {
		c.broken = withoutURL(err)
	}
	// Without a key a repeat could apply the request twice.
	return c.keyed, nil
}

// outcome is what RoundTrip returns once the attempts are over: the last
// attempt's answer, unless an attempt may have reached the server and the
// last one failed or answered 503, when the outcome is unknown.
func (c *call) outcome(ctx context.Context, resp *http.Response, err error) (*http.Response, error) {
	if err != nil && resp != nil {
		_ = resp.Body.Close()
		resp = nil
	}
	if c.broken == nil || ctx.Err() != nil {
		return resp, err
	}
	switch {
	case err != nil:
	case resp.StatusCode == http.StatusServiceUnavailable:
		_ = resp.Body.Close()
		err = fmt.Errorf("the server answered %s", resp.Status)
	default:
		return resp, nil
	}
	// Connect takes the code of a *connect.Error returned by the transport
	// as it is: without Interceptor the call is Unknown, never Unavailable.
	return nil, connect.NewError(connect.CodeUnknown, &MaybeSentError{Attempts: c.attempts, Broken: c.broken, Last: err})
}

// withoutURL returns err without the *url.Error that http.Client wraps
// around an attempt's error: the caller's http.Client adds its own.
func withoutURL(err error) error {
	if urlErr := (*url.Error)(nil); errors.As(err, &urlErr) {
		return urlErr.Unwrap()
	}
	return err
}

// isDialError says that the connection could not be established: nothing
// was sent.
func isDialError(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// isWriteError says that writing to the connection failed.
func isWriteError(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "write"
}

// isHandshakeRefusal says that the server sent a TLS alert: it refused the
// connection in the handshake (with TLS 1.3 the client learns it only after
// writing its request), so it never processed the request.
func isHandshakeRefusal(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "remote error"
}

// newIdempotencyKey returns the time in nanoseconds since 1970 (16 hex
// digits), then 128 random bits, base64url without padding (22
// characters). Keys made later sort after earlier ones, so the database
// that keeps them (Nexus's idempotency_keys, indexed by caller and key)
// appends each near the end of its index instead of at a random page; the
// random bits alone make a key unique and unguessable.
func newIdempotencyKey() string {
	return idempotencyKeyAt(time.Now())
}

func idempotencyKeyAt(now time.Time) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%016x", uint64(now.UnixNano())) + base64.RawURLEncoding.EncodeToString(b[:])
}
