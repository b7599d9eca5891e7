package rpcclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// newTLSServer serves h over HTTP/2 and TLS and returns a client config
// trusting it.
func newTLSServer(t *testing.T, h http.Handler, onState func(http.ConnState)) (*httptest.Server, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	if onState != nil {
		srv.Config.ConnState = func(_ net.Conn, st http.ConnState) { onState(st) }
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}
}

// A 503 is retried, up to MaxRetries; other answers are not.
func TestRetriesUnavailableOnly(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusOK} {
		var calls atomic.Int32
		srv, conf := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.WriteHeader(status)
		}), nil)
		c := New(conf, Options{MaxRetries: 2, MinWait: time.Millisecond, MaxWait: time.Millisecond})
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatalf("status %d: %v", status, err)
		}
		resp.Body.Close()
		want := int32(1)
		if status == http.StatusServiceUnavailable {
			want = 3
		}
		if got := calls.Load(); got != want {
			t.Errorf("status %d: %d calls, want %d", status, got, want)
		}
	}
}

// NoRetries makes exactly one attempt, even of a 503.
func TestNoRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv, conf := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}), nil)
	c := New(conf, Options{MaxRetries: NoRetries, MinWait: time.Millisecond, MaxWait: time.Millisecond})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := calls.Load(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}

// The retry policy, attempt by attempt: a refused connection is retried,
// a TLS failure is final (also when it shows as a failed write on a new
// connection), a 503 is retried, and a connection that broke after the
// request was written is retried only when the request carries an
// idempotency key.
func TestCheckRetry(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	handshake := &tls.CertificateVerificationError{Err: errors.New("unknown authority")}
	refused := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	broken := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	unwritten := &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
	for _, tt := range []struct {
		name          string
		err           error
		resp          *http.Response
		wrote, keyed  bool
		reused        bool
		wantRetry     bool
		wantMaybeSent bool
	}{
		{name: "dial", err: dial, keyed: true, wantRetry: true},
		{name: "tls", err: handshake, keyed: true},
		{name: "tls refused after writing", err: refused, wrote: true, keyed: true},
		{name: "503", resp: &http.Response{StatusCode: http.StatusServiceUnavailable}, wrote: true, keyed: true, wantRetry: true},
		{name: "500", resp: &http.Response{StatusCode: http.StatusInternalServerError}, wrote: true, keyed: true},
		{name: "broken before writing", err: broken, keyed: true},
		{name: "broken after writing, with a key", err: broken, wrote: true, keyed: true, wantRetry: true, wantMaybeSent: true},
		{name: "broken after writing, without a key", err: broken, wrote: true, wantMaybeSent: true},
		{name: "broken after writing on a used connection", err: broken, wrote: true, reused: true, keyed: true, wantRetry: true, wantMaybeSent: true},
		{name: "write failed on a new connection", err: unwritten, wrote: true, keyed: true},
		{name: "write failed on a used connection", err: unwritten, wrote: true, reused: true, keyed: true, wantRetry: true, wantMaybeSent: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &call{keyed: tt.keyed}
			c.wrote.Store(tt.wrote)
			c.reused.Store(tt.reused)
			retry, err := c.checkRetry(t.Context(), tt.resp, tt.err)
			if retry != tt.wantRetry || err != nil {
				t.Errorf("checkRetry = %v, %v; want %v, nil", retry, err, tt.wantRetry)
			}
			if maybeSent := c.broken != nil; maybeSent != tt.wantMaybeSent {
				t.Errorf("maybe sent: %v, want %v", maybeSent, tt.wantMaybeSent)
			}
			if c.wrote.Load() || c.reused.Load() {
				t.Error("the attempt's flags were not cleared for the next attempt")
			}
		})
	}
	t.Run("after the caller gave up", func(t *testing.T) {
		t.Parallel()
		done, cancel := context.WithCancel(t.Context())
		cancel()
		c := &call{keyed: true}
		c.wrote.Store(true)
		if retry, err := c.checkRetry(done, nil, broken); retry || !errors.Is(err, context.Canceled) {
			t.Errorf("checkRetry = %v, %v; want no retry and the context's error", retry, err)
		}
	})
}

// CloseIdleConnections reaches the connections under the retries, so a
// program that stops does not leave its peers waiting for them.
func TestCloseIdleConnections(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 1)
	srv, conf := newTLSServer(t, http.NotFoundHandler(), func(st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	})
	c := New(conf)
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	c.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open after CloseIdleConnections")
	}
}

// The client works on a copy of the TLS configuration: net/http adds its
// protocols to the one it holds, and clients built from one configuration
// must not race on it.
func TestTLSConfigIsCopied(t *testing.T) {
	t.Parallel()
	srv, conf := newTLSServer(t, http.NotFoundHandler(), nil)
	var wg sync.WaitGroup
	for range 2 {
		c := New(conf)
		wg.Go(func() {
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if conf.NextProtos != nil {
		t.Errorf("the caller's configuration was changed: NextProtos %q", conf.NextProtos)
	}
}

// Options.HTTP1 speaks HTTP/1.1 to a server that offers HTTP/2 too, even
// with a TLS configuration that offers only h2 (as mtls.ClientConfig's).
func TestHTTP1(t *testing.T) {
	t.Parallel()
	srv, conf := newTLSServer(t, http.NotFoundHandler(), nil)
	conf.NextProtos = []string{"h2"}
	for _, tc := range []struct {
		opts  Options
		major int
	}{{Options{}, 2}, {Options{HTTP1: true}, 1}} {
		resp, err := New(conf, tc.opts).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != tc.major {
			t.Errorf("with %+v: protocol %s, want HTTP/%d", tc.opts, resp.Proto, tc.major)
		}
	}
}
