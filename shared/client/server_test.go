package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// The unit tests run the client against a SecretService handler of their
// own, served over real mutual TLS with SVIDs from a test CA: a real Nexus
// lives in another module (the e2e tests run the client against one), and
// a handler of the test's own is the way to make a stream break at a
// chosen event.

var (
	td       = spiffeid.RequireTrustDomainFromString("spike.local")
	workload = spiffeid.RequireFromPath(td, "/app/test")
)

// serve serves h as Nexus over mTLS and returns a client for it, as
// workload, with quick retries.
func serve(t *testing.T, h nexusv1connect.SecretServiceHandler) *client.Client {
	t.Helper()
	return serveAs(t, h, spiffeid.ID{})
}

// serveAs is serve with a client that accepts only the server nexusID
// (zero: Nexus's).
func serveAs(t *testing.T, h nexusv1connect.SecretServiceHandler, nexusID spiffeid.ID) *client.Client {
	t.Helper()
	return serveWith(t, h, func(ca *devca.CA, url string) client.Config {
		src, err := ca.Source(workload)
		if err != nil {
			t.Fatal(err)
		}
		return client.Config{
			NexusURL: url,
			NexusID:  nexusID,
			Source:   src,
			Retry:    rpcclient.Options{MaxRetries: 2, MinWait: 1, MaxWait: 1},
		}
	})
}

// serveWith serves h as Nexus over mTLS with SVIDs from a new CA, and
// returns a client with the configuration config makes for the server's
// URL.
func serveWith(t *testing.T, h nexusv1connect.SecretServiceHandler, config func(ca *devca.CA, url string) client.Config) *client.Client {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	serverSrc, err := ca.Source(identity.Nexus(td))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewSecretServiceHandler(h))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mtls.NewServer(mux, mtls.ServerConfig(serverSrc, tlsconfig.AuthorizeAny()), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mtls.Serve(ctx, srv, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	c, err := client.New(t.Context(), config(ca, "https://"+ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
