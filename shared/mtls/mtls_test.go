package mtls_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("spike.local")
	serverID = spiffeid.RequireFromPath(td, "/spike/nexus")
	clientID = spiffeid.RequireFromPath(td, "/app/web")
)

// countingListener counts accepted connections, so tests can tell how many
// times a client tried.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func mustSource(t *testing.T, ca *devca.CA, id spiffeid.ID) *svid.Source {
	t.Helper()
	src, err := ca.Source(id)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// startServer serves h over mTLS, admitting callers that authorize accepts.
func startServer(t *testing.T, ca *devca.CA, authorize tlsconfig.Authorizer, h http.Handler) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := mtls.NewServer(h, mtls.ServerConfig(mustSource(t, ca, serverID), authorize), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mtls.Serve(ctx, srv, cl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String(), cl
}

func callerEcho(w http.ResponseWriter, r *http.Request) {
	id, ok := mtls.Caller(r.Context())
	if !ok {
		http.Error(w, "no caller", http.StatusInternalServerError)
		return
	}
	_, _ = io.WriteString(w, id.String()+" "+r.Proto)
}

func TestCallerIDReachesHandlerOverHTTP2(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := startServer(t, ca, tlsconfig.AuthorizeMemberOf(td), http.HandlerFunc(callerEcho))
	client := rpcclient.New(mtls.ClientConfig(mustSource(t, ca, clientID), tlsconfig.AuthorizeID(serverID)))

	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := clientID.String() + " HTTP/2.0"; string(body) != want {
		t.Fatalf("body = %q, want %q", body, want)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	otherTD := spiffeid.RequireTrustDomainFromString("evil.example")
	otherCA, err := devca.New(otherTD)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *svid.Source
		expect spiffeid.ID
	}{
		{"client from another trust domain", mustSource(t, otherCA, spiffeid.RequireFromPath(otherTD, "/spike/pilot")), serverID},
		{"client ID not authorized by server", mustSource(t, ca, spiffeid.RequireFromPath(td, "/intruder")), serverID},
		{"server is not who the client expects", mustSource(t, ca, clientID), spiffeid.RequireFromPath(td, "/spike/keeper/1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, ln := startServer(t, ca, tlsconfig.AuthorizeOneOf(clientID), http.HandlerFunc(callerEcho))
			client := rpcclient.New(mtls.ClientConfig(tt.client, tlsconfig.AuthorizeID(tt.expect)))
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request succeeded with status %d, want a handshake failure", resp.StatusCode)
			}
			if n := ln.accepted.Load(); n != 1 {
				t.Errorf("client connected %d times, want 1: a TLS failure must not be retried", n)
			}
			if errors.As(err, new(*rpcclient.MaybeSentError)) {
				t.Errorf("%v: a refused handshake reported as a request that may have been applied", err)
			}
		})
	}
}

func TestRetriesUnavailableThenSucceeds(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	url, _ := startServer(t, ca, tlsconfig.AuthorizeAny(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	client := rpcclient.New(mtls.ClientConfig(mustSource(t, ca, clientID), tlsconfig.AuthorizeID(serverID)),
		rpcclient.Options{MinWait: time.Millisecond, MaxWait: 5 * time.Millisecond})
	resp, err := client.Post(url, "application/proto", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || calls.Load() != 3 {
		t.Fatalf("status %d after %d calls, want 200 after 3", resp.StatusCode, calls.Load())
	}
}

func TestDoesNotRetryOtherErrors(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	url, _ := startServer(t, ca, tlsconfig.AuthorizeAny(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "denied", http.StatusForbidden)
	}))
	client := rpcclient.New(mtls.ClientConfig(mustSource(t, ca, clientID), tlsconfig.AuthorizeID(serverID)),
		rpcclient.Options{MinWait: time.Millisecond, MaxWait: 5 * time.Millisecond})
	resp, err := client.Post(url, "application/proto", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || calls.Load() != 1 {
		t.Fatalf("status %d after %d calls, want 403 after 1", resp.StatusCode, calls.Load())
	}
}

func TestRetriesConnectionRefusedUntilServerStarts(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	// Reserve a port, release it, and start the server there a little later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	srv := mtls.NewServer(http.HandlerFunc(callerEcho), mtls.ServerConfig(mustSource(t, ca, serverID), tlsconfig.AuthorizeAny()), nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		time.Sleep(150 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		_ = mtls.Serve(ctx, srv, l)
	}()
	client := rpcclient.New(mtls.ClientConfig(mustSource(t, ca, clientID), tlsconfig.AuthorizeID(serverID)),
		rpcclient.Options{MaxRetries: 10, MinWait: 50 * time.Millisecond, MaxWait: 100 * time.Millisecond})
	resp, err := client.Get("https://" + addr)
	if err != nil {
		t.Fatalf("request never succeeded: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
}
