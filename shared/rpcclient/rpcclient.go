// Package rpcclient builds the HTTP client that SPIKE programs and workloads
// use for Connect RPCs over SPIFFE mTLS. It retries only what is safe to
// retry: failures to connect, and responses that say the server is
// unavailable. It never retries a TLS or authorization failure.
package rpcclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Options tune the retry behaviour. The zero value gives the defaults.
type Options struct {
	// MaxRetries is the number of retries after the first attempt (default 4).
	MaxRetries int
	// MinWait and MaxWait bound the exponential backoff (default 100ms, 2s).
	MinWait, MaxWait time.Duration
}

// New returns an HTTP/2 client over tlsConf that retries dial failures and
// HTTP 503 (Connect's Unavailable) with exponential backoff.
func New(tlsConf *tls.Config, opts ...Options) *http.Client {
	o := Options{MaxRetries: 4, MinWait: 100 * time.Millisecond, MaxWait: 2 * time.Second}
	if len(opts) > 0 {
		if opts[0].MaxRetries > 0 {
			o.MaxRetries = opts[0].MaxRetries
		}
		if opts[0].MinWait > 0 {
			o.MinWait = opts[0].MinWait
		}
		if opts[0].MaxWait > 0 {
			o.MaxWait = opts[0].MaxWait
		}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: transport}
	c.Logger = nil
	c.RetryMax = o.MaxRetries
	c.RetryWaitMin = o.MinWait
	c.RetryWaitMax = o.MaxWait
	c.CheckRetry = ShouldRetry
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return &http.Client{Transport: retrying{RoundTripper: &retryablehttp.RoundTripper{Client: c}, conns: transport}}
}

// retrying is the retrying round tripper, through which
// http.Client.CloseIdleConnections also reaches the connections: a program
// that stops closes them instead of leaving its peers to time them out.
type retrying struct {
	*retryablehttp.RoundTripper
	conns *http.Transport
}

// CloseIdleConnections closes the connections that carry no request.
func (r retrying) CloseIdleConnections() { r.conns.CloseIdleConnections() }

// ShouldRetry is the retry policy: retry when the connection could not be
// established or the server answered 503; never otherwise. A TLS handshake
// that fails (unknown authority, wrong SPIFFE ID) is final.
func ShouldRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return isDialError(err), nil
	}
	return resp.StatusCode == http.StatusServiceUnavailable, nil
}

func isDialError(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}
