package server

import (
	"errors"
	"net"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// The protocol floor answers GetSecret and PutSecret over real SPIFFE mTLS
// as Nexus would shape them, for the caller's SVID, and nothing else.
func TestFloorHandler(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("spike.local")
	nexusID, caller := spiffeid.RequireFromPath(td, "/spike/nexus"), spiffeid.RequireFromPath(td, "/bench")
	ca, err := devca.New(td)
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
	srv := mtls.NewServer(FloorHandler(300), mtls.ServerConfig(serverSVID, tlsconfig.AuthorizeMemberOf(td)), nil)
	go func() { _ = mtls.Serve(t.Context(), srv, ln) }()

	clientSVID, err := ca.Source(caller)
	if err != nil {
		t.Fatal(err)
	}
	client := nexusv1connect.NewSecretServiceClient(
		rpcclient.New(mtls.ClientConfig(clientSVID, tlsconfig.AuthorizeID(nexusID))), "https://"+ln.Addr().String(),
		connect.WithInterceptors(rpcclient.Interceptor()))

	got, err := client.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "bench/p1"}))
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	s := got.Msg.GetSecret()
	if s.GetPath() != "bench/p1" || len(s.GetData()["v"]) != 300 || s.GetCreatedBy() != caller.String() {
		t.Errorf("GetSecret = path %q, %d-byte value, created by %q; want bench/p1, 300 bytes, %s",
			s.GetPath(), len(s.GetData()["v"]), s.GetCreatedBy(), caller)
	}
	for want := int64(1); want <= 2; want++ {
		put, err := client.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: "bench/p1"}))
		if err != nil {
			t.Fatalf("PutSecret: %v", err)
		}
		if put.Msg.GetVersion() != want {
			t.Errorf("PutSecret %d = version %d", want, put.Msg.GetVersion())
		}
	}
	_, err = client.ListSecrets(t.Context(), connect.NewRequest(&nexusv1.ListSecretsRequest{}))
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeUnimplemented {
		t.Errorf("ListSecrets = %v, want Unimplemented", err)
	}
}
