package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// fakeNexus is an in-process Nexus over plain HTTP: it records each request
// and answers with fixed responses, or with err when set.
type fakeNexus struct {
	err error

	mu       sync.Mutex
	requests []proto.Message
}

func (f *fakeNexus) record(m proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, m)
	return f.err
}

func (f *fakeNexus) received() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeNexus) Init(_ context.Context, req *connect.Request[nexusv1.InitRequest]) (*connect.Response[nexusv1.InitResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.InitResponse{KeyringId: "ab12"}), nil
}

func (f *fakeNexus) Unseal(_ context.Context, req *connect.Request[nexusv1.UnsealRequest]) (*connect.Response[nexusv1.UnsealResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.UnsealResponse{KeyringId: "ab12"}), nil
}

func (f *fakeNexus) Status(_ context.Context, req *connect.Request[nexusv1.StatusRequest]) (*connect.Response[nexusv1.StatusResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.StatusResponse{
		Initialized: true, SchemaVersion: 1, KeeperReachable: true, KeyringId: "ab12", NexusVersion: "dev",
	}), nil
}

func (f *fakeNexus) PutSecret(_ context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.PutSecretResponse{Path: req.Msg.GetPath(), Version: 1, CreatedAt: created}), nil
}

func (f *fakeNexus) GetSecret(_ context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	s := demoSecret()
	s.Path = req.Msg.GetPath()
	if v := req.Msg.GetVersion(); v != 0 {
		s.Version = v
	}
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: s}), nil
}

func (f *fakeNexus) ListSecrets(_ context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.ListSecretsResponse{Paths: []string{"apps/demo/api", "apps/demo/db"}}), nil
}

func (f *fakeNexus) DeleteSecret(_ context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	versions := req.Msg.GetVersions()
	if len(versions) == 0 {
		versions = []int64{1}
	}
	return connect.NewResponse(&nexusv1.DeleteSecretResponse{Versions: versions}), nil
}

// serve starts f on an httptest server (plain HTTP) that is closed when the
// test ends, and returns its URL.
func (f *fakeNexus) serve(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewOperatorServiceHandler(f))
	mux.Handle(nexusv1connect.NewSecretServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// plainNexus returns clients for the Nexus at url over plain HTTP.
func plainNexus(url string) *nexus {
	return &nexus{
		url:      url,
		operator: nexusv1connect.NewOperatorServiceClient(http.DefaultClient, url),
		secrets:  nexusv1connect.NewSecretServiceClient(http.DefaultClient, url),
		close:    func() error { return nil },
	}
}
