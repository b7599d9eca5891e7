package rpcclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/mtls"
)

var (
	testTD    = spiffeid.RequireTrustDomainFromString("spike.local")
	nexusID   = spiffeid.RequireFromPath(testTD, "/spike/nexus")
	workload  = spiffeid.RequireFromPath(testTD, "/app/web")
	validKey  = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)
	fastRetry = Options{MaxRetries: 3, MinWait: 1, MaxWait: 1}
)

// step is what the scripted server does with one attempt, after reading
// the whole request.
type step int

const (
	answer      step = iota // pass the request to the Connect handler
	unavailable             // answer 503: nothing happened
	resetStream             // abort the handler: HTTP/2 RST_STREAM
	dropConn                // close the TCP connection under the request
	resetConn               // reset the TCP connection (RST) under the request
	dropAndStop             // stop listening, then close the connection: later dials fail
	cancelCall              // cancel the caller's context and wait for it to go away
)

// scriptedNexus serves SecretService over SPIFFE mTLS and treats attempt n
// as script[n] says (answer once the script runs out), recording the
// Idempotency-Key header of every attempt.
type scriptedNexus struct {
	script []step
	cancel context.CancelFunc // for cancelCall

	mu   sync.Mutex
	keys []string
}

// secretStub answers PutSecret and GetSecret with empty responses.
type secretStub struct {
	nexusv1connect.UnimplementedSecretServiceHandler
}

func (secretStub) PutSecret(context.Context, *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	return connect.NewResponse(&nexusv1.PutSecretResponse{}), nil
}

func (secretStub) GetSecret(context.Context, *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	return connect.NewResponse(&nexusv1.GetSecretResponse{}), nil
}

// attempts returns the Idempotency-Key of each attempt the server saw.
func (s *scriptedNexus) attempts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

type connKey struct{}

// start serves s and returns its URL and a client configuration that
// trusts it, for the workload's SVID.
func (s *scriptedNexus) start(t *testing.T) (string, *devca.CA) {
	t.Helper()
	ca, err := devca.New(testTD)
	if err != nil {
		t.Fatal(err)
	}
	serverSVID, err := ca.Source(nexusID)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path, h := nexusv1connect.NewSecretServiceHandler(secretStub{})
	mux := http.NewServeMux()
	mux.Handle(path, s.scripted(ln, h))
	srv := mtls.NewServer(mux, mtls.ServerConfig(serverSVID, tlsconfig.AuthorizeMemberOf(testTD)), nil)
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String(), ca
}

// scripted wraps the Connect handler h with the script.
func (s *scriptedNexus) scripted(ln net.Listener, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		n := len(s.keys)
		s.keys = append(s.keys, r.Header.Get(IdempotencyKeyHeader))
		s.mu.Unlock()
		todo := answer
		if n < len(s.script) {
			todo = s.script[n]
		}
		switch todo {
		case answer:
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, r)
		case unavailable:
			http.Error(w, "not now", http.StatusServiceUnavailable)
		case resetStream:
			panic(http.ErrAbortHandler)
		case dropAndStop:
			_ = ln.Close()
			fallthrough
		case dropConn:
			_ = r.Context().Value(connKey{}).(net.Conn).Close()
			<-r.Context().Done()
		case resetConn:
			conn := r.Context().Value(connKey{}).(*tls.Conn).NetConn().(*net.TCPConn)
			_ = conn.SetLinger(0)
			_ = conn.Close()
			<-r.Context().Done()
		case cancelCall:
			s.cancel()
			<-r.Context().Done()
		}
	})
}

// secretsClient returns a SecretService client for url, as the workload,
// with the retrying client and, unless bare, Interceptor.
func secretsClient(t *testing.T, ca *devca.CA, url string, bare bool) nexusv1connect.SecretServiceClient {
	t.Helper()
	src, err := ca.Source(workload)
	if err != nil {
		t.Fatal(err)
	}
	httpClient := New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID)), fastRetry)
	t.Cleanup(httpClient.CloseIdleConnections)
	var opts []connect.ClientOption
	if !bare {
		opts = append(opts, connect.WithInterceptors(Interceptor()))
	}
	return nexusv1connect.NewSecretServiceClient(httpClient, url, opts...)
}

// Every call carries a valid key of its own, and every retry of a call the
// same key as its first attempt, whatever made it retry.
func TestIdempotencyKeyAcrossRetries(t *testing.T) {
	t.Parallel()
	s := &scriptedNexus{script: []step{unavailable, resetStream, dropConn}}
	url, ca := s.start(t)
	secrets := secretsClient(t, ca, url, false)

	if _, err := secrets.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"})); err != nil {
		t.Fatalf("first put: %v", err)
	}
	if _, err := secrets.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"})); err != nil {
		t.Fatalf("second put: %v", err)
	}
	keys := s.attempts()
	if len(keys) != 5 {
		t.Fatalf("the server saw %d attempts (%q), want 4 of the first put and 1 of the second", len(keys), keys)
	}
	first := keys[0]
	if !validKey.MatchString(first) {
		t.Errorf("key %q is not 16 to 64 characters of [A-Za-z0-9_-]", first)
	}
	if diff := cmp.Diff([]string{first, first, first, first}, keys[:4]); diff != "" {
		t.Errorf("keys of the retries of one call (-want +got):\n%s", diff)
	}
	if keys[4] == first || !validKey.MatchString(keys[4]) {
		t.Errorf("the second call's key %q: want a valid key other than the first call's %q", keys[4], first)
	}
}

// A key the caller chose is sent as it is, on every attempt.
func TestCallerKeyIsKept(t *testing.T) {
	t.Parallel()
	const mine = "caller-chosen_key-0001"
	s := &scriptedNexus{script: []step{dropConn, unavailable}}
	url, ca := s.start(t)
	secrets := secretsClient(t, ca, url, false)

	req := connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"})
	req.Header().Set(IdempotencyKeyHeader, mine)
	if _, err := secrets.PutSecret(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{mine, mine, mine}, s.attempts()); diff != "" {
		t.Errorf("keys the server saw (-want +got):\n%s", diff)
	}
}

// What a call that got no answer reports: Unknown when a mutation may
// have reached the server, Unavailable when nothing was sent or the
// procedure has no side effects, Canceled when the caller gave up.
func TestOutcomeWithoutAnswer(t *testing.T) {
	t.Parallel()
	put := func(ctx context.Context, c nexusv1connect.SecretServiceClient) error {
		_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"}))
		return err
	}
	get := func(ctx context.Context, c nexusv1connect.SecretServiceClient) error {
		_, err := c.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "a"}))
		return err
	}
	allUnavailable := []step{unavailable, unavailable, unavailable, unavailable}
	tests := []struct {
		name         string
		script       []step
		noServer     bool // nothing listens: every dial fails
		bare         bool // without Interceptor
		call         func(context.Context, nexusv1connect.SecretServiceClient) error
		wantCode     connect.Code
		wantAttempts int
	}{
		{name: "put, dropped then unreachable", script: []step{dropAndStop}, call: put, wantCode: connect.CodeUnknown, wantAttempts: 1},
		{name: "get, dropped then unreachable", script: []step{dropAndStop}, call: get, wantCode: connect.CodeUnavailable, wantAttempts: 1},
		{name: "put, dropped then 503", script: []step{dropConn, unavailable, unavailable, unavailable}, call: put, wantCode: connect.CodeUnknown, wantAttempts: 4},
		{name: "put, stream reset then 503", script: []step{unavailable, resetStream, unavailable, unavailable}, call: put, wantCode: connect.CodeUnknown, wantAttempts: 4},
		{name: "get, stream reset then 503", script: []step{resetStream, unavailable, unavailable, unavailable}, call: get, wantCode: connect.CodeUnavailable, wantAttempts: 4},
		{name: "put, TCP reset then 503", script: []step{resetConn, unavailable, unavailable, unavailable}, call: put, wantCode: connect.CodeUnknown, wantAttempts: 4},
		{name: "put, TCP reset then answered", script: []step{resetConn}, call: put, wantAttempts: 2},
		{name: "put, dropped every time", script: []step{dropConn, dropConn, dropConn, dropConn}, call: put, wantCode: connect.CodeUnknown, wantAttempts: 4},
		{name: "put without the interceptor, dropped then unreachable", script: []step{dropAndStop}, bare: true, call: put, wantCode: connect.CodeUnknown, wantAttempts: 1},
		{name: "put, 503 every time", script: allUnavailable, call: put, wantCode: connect.CodeUnavailable, wantAttempts: 4},
		{name: "put, dropped then answered", script: []step{dropConn}, call: put, wantAttempts: 2},
		{name: "put, unreachable", noServer: true, call: put, wantCode: connect.CodeUnavailable},
		{name: "get, unreachable", noServer: true, call: get, wantCode: connect.CodeUnavailable},
		{name: "put, caller cancels", script: []step{cancelCall}, call: put, wantCode: connect.CodeCanceled, wantAttempts: 1},
		{name: "put, dropped then caller cancels", script: []step{dropConn, cancelCall}, call: put, wantCode: connect.CodeCanceled, wantAttempts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			s := &scriptedNexus{script: tt.script, cancel: cancel}
			url, ca := s.start(t)
			if tt.noServer {
				url = closedURL(t)
			}
			err := tt.call(ctx, secretsClient(t, ca, url, tt.bare))
			if got := codeOf(err); got != tt.wantCode {
				t.Errorf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == connect.CodeUnknown && !strings.Contains(err.Error(), "may or may not have been applied") {
				t.Errorf("message %q does not say that the request may have been applied", err)
			}
			keys := s.attempts()
			if len(keys) != tt.wantAttempts {
				t.Fatalf("the server saw %d attempts, want %d", len(keys), tt.wantAttempts)
			}
			for i, k := range keys {
				if k != keys[0] || !validKey.MatchString(k) {
					t.Errorf("attempt %d carried key %q, want the first attempt's %q", i+1, k, keys[0])
				}
			}
		})
	}
}

// codeOf is connect.CodeOf, with 0 for success.
func codeOf(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// closedURL returns the URL of a port where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return url
}

// The error of an uncertain outcome is a *MaybeSentError that counts the
// attempts, whether or not the interceptor rewrote it.
func TestMaybeSentErrorIsInTheChain(t *testing.T) {
	t.Parallel()
	for _, bare := range []bool{false, true} {
		s := &scriptedNexus{script: []step{dropConn, unavailable, unavailable, unavailable}}
		url, ca := s.start(t)
		_, err := secretsClient(t, ca, url, bare).PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"}))
		var maybeSent *MaybeSentError
		if !errors.As(err, &maybeSent) {
			t.Fatalf("interceptor %v: %v has no *MaybeSentError", !bare, err)
		}
		if maybeSent.Attempts != 4 || maybeSent.Broken == nil || !strings.Contains(fmt.Sprint(maybeSent.Last), "503") {
			t.Errorf("interceptor %v: %d attempts, broken by %v, the last %v; want 4, a transport error and a 503",
				!bare, maybeSent.Attempts, maybeSent.Broken, maybeSent.Last)
		}
	}
}

// A caller that gives up gets its context's error even when an earlier
// attempt may have reached the server: over plain HTTP too, where no
// Connect client checks the context for it.
func TestCallerContextWins(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := &scriptedNexus{script: []step{dropConn, cancelCall}, cancel: cancel}
	url, ca := s.start(t)
	src, err := ca.Source(workload)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+nexusv1connect.SecretServicePutSecretProcedure, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID)), fastRetry).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want the caller's cancellation", resp.StatusCode)
	}
	if !errors.Is(err, context.Canceled) || errors.As(err, new(*MaybeSentError)) {
		t.Errorf("error %v, want context.Canceled and no *MaybeSentError", err)
	}
	if n := len(s.attempts()); n != 2 {
		t.Errorf("the server saw %d attempts, want 2", n)
	}
}

// A stream reset while the answer was read reaches Connect as Canceled
// although the caller cancelled nothing: for a write that is Unknown (the
// request had arrived), for a read and for the caller's own cancellation
// it stays as it is.
func TestStreamResetIsUnknown(t *testing.T) {
	reset := connect.UnaryInterceptorFunc(func(connect.UnaryFunc) connect.UnaryFunc {
		return func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
			return nil, connect.NewError(connect.CodeCanceled, errors.New("http2: stream reset by peer"))
		}
	})
	client := nexusv1connect.NewSecretServiceClient(http.DefaultClient, "https://127.0.0.1:1",
		connect.WithInterceptors(Interceptor(), reset))
	put := func(ctx context.Context) error {
		_, err := client.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"}))
		return err
	}
	get := func(ctx context.Context) error {
		_, err := client.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "a"}))
		return err
	}
	for _, tt := range []struct {
		name      string
		call      func(context.Context) error
		cancelled bool
		want      connect.Code
	}{
		{"put", put, false, connect.CodeUnknown},
		{"get", get, false, connect.CodeCanceled},
		{"put cancelled by the caller", put, true, connect.CodeCanceled},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		if tt.cancelled {
			cancel()
		}
		got := connect.CodeOf(tt.call(ctx))
		cancel()
		if got != tt.want {
			t.Errorf("%s: code %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A procedure named not replayable goes without a key and is never sent
// twice: a connection that breaks once it may have arrived is Unknown at
// once, and the server saw one attempt without the internal marker.
func TestNotReplayableIsSentOnce(t *testing.T) {
	t.Parallel()
	s := &scriptedNexus{script: []step{dropConn}}
	url, ca := s.start(t)
	src, err := ca.Source(workload)
	if err != nil {
		t.Fatal(err)
	}
	httpClient := New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID)), fastRetry)
	t.Cleanup(httpClient.CloseIdleConnections)
	secrets := nexusv1connect.NewSecretServiceClient(httpClient, url,
		connect.WithInterceptors(Interceptor(nexusv1connect.SecretServicePutSecretProcedure)))
	_, err = secrets.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a"}))
	if connect.CodeOf(err) != connect.CodeUnknown {
		t.Fatalf("error %v, want Unknown", err)
	}
	if keys := s.attempts(); len(keys) != 1 || keys[0] != "" {
		t.Errorf("the server saw attempts with keys %q, want one without a key", keys)
	}
	if _, err := secrets.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "a"})); err != nil {
		t.Fatalf("a procedure not named keeps its key and works: %v", err)
	}
	if keys := s.attempts(); len(keys) != 2 || !validKey.MatchString(keys[1]) {
		t.Errorf("keys %q: want the get's own key", keys)
	}
}

// A server whose certificate the client refuses (another SPIFFE ID than
// expected: a wrong URL or configuration) is not an outage: the call fails
// Unauthenticated, saying why, and is not tried again; the server never
// sees the request.
func TestRefusedServerIsNotUnavailable(t *testing.T) {
	t.Parallel()
	s := &scriptedNexus{}
	url, ca := s.start(t)
	src, err := ca.Source(workload)
	if err != nil {
		t.Fatal(err)
	}
	other := spiffeid.RequireFromPath(testTD, "/somewhere/else")
	httpClient := New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(other)), fastRetry)
	t.Cleanup(httpClient.CloseIdleConnections)
	client := nexusv1connect.NewSecretServiceClient(httpClient, url, connect.WithInterceptors(Interceptor()))
	_, err = client.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a", Data: map[string]string{"k": "v"}}))
	var refused *mtls.ServerRefusedError
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !errors.As(err, &refused) {
		t.Fatalf("put to a server the client refuses: %v; want Unauthenticated with a *mtls.ServerRefusedError", err)
	}
	if n := len(s.keys); n != 0 {
		t.Errorf("the server saw %d requests, want none", n)
	}
}

// Keys are what Nexus accepts, unique, and sort in the order they were
// made (the database appends them to its index).
func TestIdempotencyKeysSortByTime(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)
	start := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		// Steps from a microsecond to three seconds: the order holds across each.
		k := idempotencyKeyAt(start.Add(time.Duration(i*i*i) * time.Microsecond))
		if !valid.MatchString(k) {
			t.Fatalf("key %q is not 16 to 64 characters of A-Z, a-z, 0-9, - and _", k)
		}
		if seen[k] {
			t.Fatalf("key %q made twice", k)
		}
		seen[k] = true
		if i > 0 && k <= prev {
			t.Fatalf("key %q, made later, does not sort after %q", k, prev)
		}
		prev = k
	}
	if a, b := idempotencyKeyAt(start), idempotencyKeyAt(start); a[16:] == b[16:] {
		t.Errorf("two keys made at the same time share their random part %q", a[16:])
	}
}
