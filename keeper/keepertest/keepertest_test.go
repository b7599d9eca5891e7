package keepertest_test

import (
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/keeper/keepertest"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

var td = spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)

const password = "correct horse battery staple"

func newCA(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	return ca
}

// client returns a client of k presenting an SVID for id minted by ca. It
// retries a refused connection once, quickly.
func client(t *testing.T, ca *devca.CA, k *keepertest.Keeper, id spiffeid.ID) keeperv1connect.KeeperServiceClient {
	t.Helper()
	src, err := ca.Source(id)
	if err != nil {
		t.Fatalf("SVID for %s: %v", id, err)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(k.ID())),
		rpcclient.Options{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: 10 * time.Millisecond})
	return keeperv1connect.NewKeeperServiceClient(httpClient, k.URL())
}

func status(t *testing.T, c keeperv1connect.KeeperServiceClient) (*keeperv1.StatusResponse, error) {
	t.Helper()
	resp, err := c.Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func wantStatus(t *testing.T, what string, c keeperv1connect.KeeperServiceClient, want *keeperv1.StatusResponse) {
	t.Helper()
	got, err := status(t, c)
	if err != nil {
		t.Fatalf("%s: Status: %v", what, err)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s: Status (-want +got):\n%s", what, diff)
	}
}

// initAndUnseal makes a keyring and unseals Keeper with it.
func initAndUnseal(t *testing.T, c keeperv1connect.KeeperServiceClient) *keeperv1.SealedKeyring {
	t.Helper()
	resp, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte(password)}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	sealed := resp.Msg.GetKeyring()
	if _, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte(password), Keyring: sealed})); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	return sealed
}

func TestStartRestartStop(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	k := keepertest.Start(t, ca, keepertest.Options{})
	if diff := cmp.Diff(identity.Keeper(td, "1"), k.ID(), cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
		t.Errorf("ID (-want +got):\n%s", diff)
	}
	c := client(t, ca, k, identity.Nexus(td))

	wantStatus(t, "after Start", c, &keeperv1.StatusResponse{})
	sealed := initAndUnseal(t, c)
	unsealed := &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1, OldestKeyVersion: 1, Epoch: sealed.GetEpoch(), Source: "unseal"}
	wantStatus(t, "after Unseal", c, unsealed)

	url := k.URL()
	k.Restart()
	if k.URL() != url {
		t.Errorf("URL after Restart = %s, want %s", k.URL(), url)
	}
	wantStatus(t, "after Restart", c, &keeperv1.StatusResponse{})
	// The keyring stored by Nexus unseals the restarted Keeper.
	if _, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte(password), Keyring: sealed})); err != nil {
		t.Fatalf("Unseal after Restart: %v", err)
	}
	wantStatus(t, "after Restart and Unseal", c, unsealed)

	k.Stop()
	if _, err := status(t, c); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("Status while stopped = %v, want Unavailable (connection refused)", err)
	}
	k.Stop() // a second Stop does nothing
	k.Restart()
	wantStatus(t, "after Stop and Restart", c, &keeperv1.StatusResponse{})
}

// TestRefusesOthers checks that only the Nexus ID gets to KeeperService:
// callers that are neither Nexus nor a peer Keeper fail the TLS handshake
// and never reach a handler, and a peer Keeper is refused by the handler.
func TestRefusesOthers(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	k := keepertest.Start(t, ca, keepertest.Options{})
	_, err := status(t, client(t, ca, k, identity.Keeper(td, "2")))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("Status as a peer Keeper = %v, want PermissionDenied", err)
	}
	for _, id := range []spiffeid.ID{
		spiffeid.RequireFromSegments(td, "app", "x"),
		identity.Pilot(td),
	} {
		_, err := status(t, client(t, ca, k, id))
		if err == nil {
			t.Errorf("Status as %s succeeded", id)
			continue
		}
		if code := connect.CodeOf(err); code == connect.CodePermissionDenied {
			t.Errorf("Status as %s reached the handler: %v", id, err)
		}
	}
	wantStatus(t, "as Nexus", client(t, ca, k, identity.Nexus(td)), &keeperv1.StatusResponse{})
}

func TestOptions(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	keeperID := identity.Keeper(td, "b")
	nexusID := spiffeid.RequireFromSegments(td, "custom", "nexus")
	k := keepertest.Start(t, ca, keepertest.Options{ID: keeperID, NexusID: nexusID, KDFTime: 2, KDFMemoryKiB: 2048, KDFThreads: 2})
	if k.ID() != keeperID {
		t.Errorf("ID = %s, want %s", k.ID(), keeperID)
	}
	if _, err := status(t, client(t, ca, k, identity.Nexus(td))); err == nil {
		t.Error("Status as the default Nexus ID succeeded, want it refused")
	}
	sealed := initAndUnseal(t, client(t, ca, k, nexusID))
	var sk keyring.Sealed
	if err := sk.UnmarshalBinary(sealed.GetSealed()); err != nil {
		t.Fatalf("sealed keyring: %v", err)
	}
	params, ok := sk.PasswordParams()
	if !ok {
		t.Fatal("sealed keyring has no password slot")
	}
	params.Salt = nil
	if diff := cmp.Diff(keyring.Params{Time: 2, MemoryKiB: 2048, Threads: 2}, params); diff != "" {
		t.Errorf("kdf params (-want +got):\n%s", diff)
	}
}

// TestErrorDetail shows how a caller reads the reason of a refusal: from
// the ErrorDetail, not from the message.
func TestErrorDetail(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	k := keepertest.Start(t, ca, keepertest.Options{})
	c := client(t, ca, k, identity.Nexus(td))
	sealed := initAndUnseal(t, c)
	_, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte("not the password"), Keyring: sealed}))

	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Unseal with a wrong password = %v, want a Connect error", err)
	}
	var reasons []keeperv1.ErrorDetail_Reason
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("detail %s: %v", d.Type(), err)
		}
		if ed, ok := v.(*keeperv1.ErrorDetail); ok {
			reasons = append(reasons, ed.GetReason())
		}
	}
	if ce.Code() != connect.CodePermissionDenied {
		t.Errorf("code = %v, want PermissionDenied", ce.Code())
	}
	if diff := cmp.Diff([]keeperv1.ErrorDetail_Reason{keeperv1.ErrorDetail_REASON_WRONG_PASSWORD}, reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
}
