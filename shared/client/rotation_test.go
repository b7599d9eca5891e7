package client_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/mtls"
)

// whoami answers GetSecret with the caller's SPIFFE ID as the secret's
// creator: what the server saw in the TLS handshake.
type whoami struct {
	nexusv1connect.UnimplementedSecretServiceHandler
}

func (whoami) GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	caller, _ := mtls.Caller(ctx)
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: &nexusv1.Secret{Path: req.Msg.GetPath(), Version: 1, CreatedBy: caller.String()}}), nil
}

// SVID files replaced on disk reach the next call of a running client,
// on a new connection: the server sees the new certificate.
func TestFileSVIDRotation(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "svid")
	other := spiffeid.RequireFromPath(td, "/app/rotated")
	var ca *devca.CA
	c := serveWith(t, whoami{}, func(c *devca.CA, url string) client.Config {
		ca = c
		files, err := ca.WriteSVID(dir, workload, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return client.Config{NexusURL: url, SVID: files}
	})
	s, err := c.Get(t.Context(), "a/b")
	if err != nil || s.CreatedBy != workload.String() {
		t.Fatalf("Get: %+v, %v; want the server to see %s", s, err, workload)
	}
	if _, err := ca.WriteSVID(dir, other, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The files are looked at again at most once a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.Get(t.Context(), "a/b")
		if err != nil {
			t.Fatal(err)
		}
		if s.CreatedBy == other.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the files were replaced the server still sees %s", s.CreatedBy)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if id, err := c.ID(); err != nil || id != other {
		t.Errorf("ID() = %v, %v; want %s", id, err, other)
	}
}
