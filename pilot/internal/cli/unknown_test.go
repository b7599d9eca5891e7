package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/shared/rpcclient"
)

type connKey struct{}

// droppingNexus serves HTTP/2 over TLS and closes the connection under
// every request once it has read it, as a Nexus that dies mid-request
// does. It returns the URL and a TLS configuration that trusts it.
func droppingNexus(t *testing.T) (string, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Context().Value(connKey{}).(net.Conn).Close()
		<-r.Context().Done()
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return srv.URL, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// A write whose connection broke after it was sent exits 3 and says that
// it may have been applied; a read in the same situation is a plain
// failure to reach Nexus; an Unknown from Nexus itself exits 3 with its
// message.
func TestUnknownOutcome(t *testing.T) {
	t.Parallel()
	dropURL, conf := droppingNexus(t)
	dialDropping := func(_ context.Context, opts ...connect.ClientOption) (*nexus, error) {
		httpClient := rpcclient.New(conf, rpcclient.Options{MaxRetries: 1, MinWait: 1, MaxWait: 1})
		return newNexus(httpClient, dropURL, func() error { return nil }, opts...), nil
	}
	uncertain := "the database connection broke during the commit: the write may or may not have happened"
	fakeURL := (&fakeNexus{err: connect.NewError(connect.CodeUnknown, errors.New(uncertain))}).serve(t)

	tests := []struct {
		name     string
		dial     func(context.Context, ...connect.ClientOption) (*nexus, error)
		args     []string
		wantCode int
		wantErr  []string
	}{
		{
			name:     "put, connection dropped",
			dial:     dialDropping,
			args:     []string{"secret", "put", "apps/x", "k=v"},
			wantCode: 3,
			wantErr: []string{
				"spike: no answer from Nexus at " + dropURL + ": unknown: the connection broke after the request was sent",
				"it may or may not have been applied; 2 attempts",
				unknownHint,
			},
		},
		{
			name:     "get, connection dropped",
			dial:     dialDropping,
			args:     []string{"secret", "get", "apps/x"},
			wantCode: 1,
			wantErr:  []string{"spike: cannot reach Nexus at " + dropURL + ": unavailable: no answer from the server", connectionHint},
		},
		{
			name:     "put, Nexus says Unknown",
			dial:     dialPlain(fakeURL),
			args:     []string{"secret", "put", "apps/x", "k=v"},
			wantCode: 3,
			wantErr:  []string{"spike: " + uncertain + "\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			p := &Program{
				Version: "test",
				Getenv:  envFunc(nil),
				Stdin:   strings.NewReader(""),
				Stdout:  &stdout,
				Stderr:  &stderr,
				dial:    tt.dial,
			}
			if code := p.Run(t.Context(), tt.args); code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, tt.wantCode, stderr.String())
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), want)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
