package server_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/keeper/internal/server"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// peerClient calls k's PeerService presenting an SVID for id.
func (k *keeper) peerClient(t *testing.T, id spiffeid.ID) keeperv1connect.PeerServiceClient {
	t.Helper()
	s, err := k.ca.Mint(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	isKeeper := tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if identity.IsKeeper(td, id) {
			return nil
		}
		return connect.NewError(connect.CodePermissionDenied, nil)
	})
	httpClient := rpcclient.New(mtls.ClientConfig(svid.Static(s, k.ca.Bundle()), isKeeper), rpcclient.Options{MaxRetries: rpcclient.NoRetries})
	t.Cleanup(httpClient.CloseIdleConnections)
	return keeperv1connect.NewPeerServiceClient(httpClient, k.url)
}

// fetch asks k for its keyring as the peer id and opens the answer.
func fetch(t *testing.T, k *keeper, id spiffeid.ID, want []byte) (*keyring.Keyring, error) {
	t.Helper()
	req, err := keyring.NewShareRequest()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := k.peerClient(t, id).FetchKeyring(t.Context(), connect.NewRequest(&keeperv1.FetchKeyringRequest{
		KeyringId: want, PublicKey: req.PublicKey(),
	}))
	if err != nil {
		return nil, err
	}
	u, err := req.OpenUnlocked(resp.Msg.GetKeyringId(), resp.Msg.GetSealed())
	if err != nil {
		return nil, err
	}
	return u.Release(), nil
}

// Only Keepers may ask for the keyring, only one that holds it gives it,
// only the one asked for, and not after a seal on purpose.
func TestFetchKeyring(t *testing.T) {
	t.Parallel()
	k := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	peer := identity.Keeper(td, "2")
	notKeeper := rpcErr{Code: connect.CodePermissionDenied, Msg: "caller is not a keeper"}
	sealed := refused(keeperv1.ErrorDetail_REASON_SEALED, "keeper is sealed")

	_, err := fetch(t, k, peer, nil)
	wantErr(t, "fetch from a sealed Keeper", err, sealed)

	sk := initKeyring(t, k.nexus(t), password)
	if err := unseal(t, k.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	for _, id := range []spiffeid.ID{nexusID, appID, identity.Pilot(td), spiffeid.RequireFromString("spiffe://spike.local/spike/keeper/2/x")} {
		_, err := fetch(t, k, id, nil)
		wantErr(t, "fetch as "+id.String(), err, notKeeper)
	}
	ring, err := fetch(t, k, peer, sk.GetKeyringId())
	if err != nil {
		t.Fatalf("fetch as a peer Keeper: %v", err)
	}
	if !bytes.Equal(ring.ID(), sk.GetKeyringId()) || ring.ActiveVersion() != 1 {
		t.Errorf("fetched keyring %x version %d, want %x version 1", ring.ID(), ring.ActiveVersion(), sk.GetKeyringId())
	}
	ring.Drop()
	_, err = fetch(t, k, peer, bytes.Repeat([]byte{9}, keyring.IDSize))
	wantErr(t, "fetch of another keyring", err, refused(keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, "keeper is unsealed with a different keyring"))

	if _, err := k.nexus(t).Seal(t.Context(), connect.NewRequest(&keeperv1.SealRequest{})); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, k.nexus(t), &keeperv1.StatusResponse{SealedOnPurpose: true})
	_, err = fetch(t, k, peer, nil)
	wantErr(t, "fetch after a seal", err, sealed)
	if err := unseal(t, k.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, k.nexus(t), &keeperv1.StatusResponse{Unsealed: true, KeyringId: sk.GetKeyringId(), ActiveKeyVersion: 1, OldestKeyVersion: 1, Epoch: 1, Source: "unseal"})
}

// A Keeper without the keyring takes it from a peer; one sealed on purpose
// does not, until it is unsealed.
func TestReseed(t *testing.T) {
	t.Parallel()
	holder := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	sk := initKeyring(t, holder.nexus(t), password)
	if err := unseal(t, holder.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	fresh := startKeeperOn(t, holder.ca, identity.Keeper(td, "2"), tlsconfig.AuthorizeMemberOf(td))

	// The fresh Keeper is sealed on purpose first: it must not re-seed.
	if _, err := fresh.nexus(t).Seal(t.Context(), connect.NewRequest(&keeperv1.SealRequest{})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var loops sync.WaitGroup
	t.Cleanup(func() { cancel(); loops.Wait() })
	freshPeers := []server.Peer{{Name: holder.url, Client: fresh.peerClientOf(t, holder)}}
	loops.Go(func() { fresh.srv.Reseed(ctx, freshPeers, 20*time.Millisecond) })
	time.Sleep(200 * time.Millisecond) // ten intervals
	if fresh.srv.Unsealed() {
		t.Fatal("a Keeper sealed on purpose re-seeded from its peer")
	}

	// A Keeper that just (re)started is not sealed on purpose: a new server
	// on the same footing re-seeds, told by Nexus which keyring to take.
	restarted := startKeeperOn(t, holder.ca, identity.Keeper(td, "3"), tlsconfig.AuthorizeMemberOf(td))
	restartedPeers := []server.Peer{
		{Name: fresh.url, Client: restarted.peerClientOf(t, fresh)},
		{Name: holder.url, Client: restarted.peerClientOf(t, holder)},
	}
	loops.Go(func() { restarted.srv.Reseed(ctx, restartedPeers, 20*time.Millisecond) })
	if _, err := restarted.nexus(t).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{ExpectedKeyringId: sk.GetKeyringId()})); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !restarted.srv.Unsealed() {
		if time.Now().After(deadline) {
			t.Fatal("the restarted Keeper did not re-seed from its peer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := status(t, restarted.nexus(t))
	if !bytes.Equal(st.GetKeyringId(), sk.GetKeyringId()) || st.GetSource() != "peer "+holder.url {
		t.Errorf("restarted Keeper status %v, want keyring %x from peer %s", st, sk.GetKeyringId(), holder.url)
	}
	// It wraps and unwraps like the Keeper it got the keyring from.
	gen, err := restarted.nexus(t).GenerateDataKey(t.Context(), connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := holder.nexus(t).DecryptDataKey(t.Context(), connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: gen.Msg.GetRootKeyVersion(),
	}))
	if err != nil || !bytes.Equal(dec.Msg.GetPlaintext(), gen.Msg.GetPlaintext()) {
		t.Errorf("a data key wrapped by the re-seeded Keeper does not unwrap at its peer: %v", err)
	}

	// The one sealed on purpose comes back with an unseal, and from then
	// on would re-seed again.
	if err := unseal(t, fresh.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	if st := status(t, fresh.nexus(t)); st.GetSealedOnPurpose() || !st.GetUnsealed() {
		t.Errorf("after unseal: %v", st)
	}
}

// A keyring taken from a peer that is not the one Nexus's database stores
// is dropped as soon as Nexus says which one it expects.
func TestWrongKeyringFromPeerIsDropped(t *testing.T) {
	t.Parallel()
	holder := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	sk := initKeyring(t, holder.nexus(t), password)
	if err := unseal(t, holder.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	fresh := startKeeperOn(t, holder.ca, identity.Keeper(td, "2"), tlsconfig.AuthorizeMemberOf(td))
	ctx, cancel := context.WithCancel(t.Context())
	var loops sync.WaitGroup
	t.Cleanup(func() { cancel(); loops.Wait() })
	peers := []server.Peer{{Name: holder.url, Client: fresh.peerClientOf(t, holder)}}
	loops.Go(func() { fresh.srv.Reseed(ctx, peers, time.Hour) })
	deadline := time.Now().Add(10 * time.Second)
	for !fresh.srv.Unsealed() {
		if time.Now().After(deadline) {
			t.Fatal("no re-seed at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := bytes.Repeat([]byte{3}, keyring.IDSize)
	st, err := fresh.nexus(t).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{ExpectedKeyringId: other}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.GetUnsealed() || fresh.srv.Unsealed() {
		t.Errorf("a Keeper holding another keyring from a peer kept it: %v", st.Msg)
	}
}

// peerClientOf is k's client of other's PeerService, presenting k's ID.
func (k *keeper) peerClientOf(t *testing.T, other *keeper) keeperv1connect.PeerServiceClient {
	t.Helper()
	return other.peerClient(t, k.id)
}
