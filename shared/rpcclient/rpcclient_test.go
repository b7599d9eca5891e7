package rpcclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

// A TLS failure is final: no retry; a refused connection is retried.
func TestShouldRetry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	handshake := &tls.CertificateVerificationError{Err: errors.New("unknown authority")}
	for _, tt := range []struct {
		name string
		err  error
		resp *http.Response
		want bool
	}{
		{"dial", dial, nil, true},
		{"tls", handshake, nil, false},
		{"503", nil, &http.Response{StatusCode: http.StatusServiceUnavailable}, true},
		{"500", nil, &http.Response{StatusCode: http.StatusInternalServerError}, false},
	} {
		if got, _ := ShouldRetry(ctx, tt.resp, tt.err); got != tt.want {
			t.Errorf("%s: retry %v, want %v", tt.name, got, tt.want)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if got, err := ShouldRetry(done, nil, dial); got || err == nil {
		t.Errorf("after the caller gave up: retry %v, %v; want no retry and the context's error", got, err)
	}
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
