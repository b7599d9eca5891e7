package server_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/internal/server"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/shared/identity"
)

// TestRotateAdvanceDestroy walks one Keeper through a whole rotation:
// Rotate changes nothing until Advance; data keys of the old version still
// unwrap and rewrap under the new one; the old epoch is refused from then
// on; once destroyed, the old version no longer unwraps.
func TestRotateAdvanceDestroy(t *testing.T) {
	t.Parallel()
	k := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	c := k.nexus(t)
	sk := initKeyring(t, c, password)
	if err := unseal(t, c, password, sk); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	old, err := c.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	if err != nil {
		t.Fatal(err)
	}

	rot, err := c.Rotate(ctx, connect.NewRequest(&keeperv1.RotateRequest{Keyring: sk}))
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if r := rot.Msg; r.GetActiveKeyVersion() != 2 || r.GetOldestKeyVersion() != 1 || r.GetKeyring().GetEpoch() != sk.GetEpoch()+1 {
		t.Fatalf("Rotate = versions %d..%d epoch %d, want 1..2 epoch %d", r.GetOldestKeyVersion(), r.GetActiveKeyVersion(), r.GetKeyring().GetEpoch(), sk.GetEpoch()+1)
	}
	if st := status(t, c); st.GetActiveKeyVersion() != 1 || st.GetEpoch() != sk.GetEpoch() {
		t.Errorf("Rotate changed the Keeper's state before Advance: %v", st)
	}
	_, err = c.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID, MinEpoch: sk.GetEpoch() + 1}))
	wantReason(t, "GenerateDataKey asking for the rotated epoch before Advance", err, keeperv1.ErrorDetail_REASON_STALE_KEYRING, "keyring epoch")

	adv, err := c.Advance(ctx, connect.NewRequest(&keeperv1.AdvanceRequest{Keyring: rot.Msg.GetKeyring()}))
	if err != nil {
		t.Fatalf("Advance: %v", err)
	}
	if adv.Msg.GetEpoch() != sk.GetEpoch()+1 || adv.Msg.GetActiveKeyVersion() != 2 {
		t.Errorf("Advance = %v", adv.Msg)
	}
	if _, err := c.Advance(ctx, connect.NewRequest(&keeperv1.AdvanceRequest{Keyring: rot.Msg.GetKeyring()})); err != nil {
		t.Errorf("Advance again: %v", err)
	}
	gen, err := c.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID, MinEpoch: sk.GetEpoch() + 1}))
	if err != nil || gen.Msg.GetRootKeyVersion() != 2 {
		t.Fatalf("GenerateDataKey after Advance: version %d, %v; want 2", gen.Msg.GetRootKeyVersion(), err)
	}
	rw, err := c.RewrapDataKey(ctx, connect.NewRequest(&keeperv1.RewrapDataKeyRequest{DekId: dekID, Wrapped: old.Msg.GetWrapped(), RootKeyVersion: 1}))
	if err != nil || rw.Msg.GetRootKeyVersion() != 2 {
		t.Fatalf("RewrapDataKey: version %d, %v; want 2", rw.Msg.GetRootKeyVersion(), err)
	}
	for _, w := range []struct {
		wrapped []byte
		version uint32
	}{{old.Msg.GetWrapped(), 1}, {rw.Msg.GetWrapped(), 2}} {
		dec, err := c.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: w.wrapped, RootKeyVersion: w.version}))
		if err != nil || !bytes.Equal(dec.Msg.GetPlaintext(), old.Msg.GetPlaintext()) {
			t.Errorf("data key wrapped under version %d does not unwrap to the original: %v", w.version, err)
		}
	}
	// The epoch before the rotation is a rollback from now on.
	_, err = c.Rotate(ctx, connect.NewRequest(&keeperv1.RotateRequest{Keyring: sk}))
	wantReason(t, "Rotate of the previous epoch", err, keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING, "keyring: epoch")

	_, err = c.DestroyRootKeys(ctx, connect.NewRequest(&keeperv1.DestroyRootKeysRequest{Keyring: rot.Msg.GetKeyring(), BelowVersion: 3}))
	wantReason(t, "DestroyRootKeys of the active version", err, keeperv1.ErrorDetail_REASON_INVALID_REQUEST, "below_version")
	des, err := c.DestroyRootKeys(ctx, connect.NewRequest(&keeperv1.DestroyRootKeysRequest{Keyring: rot.Msg.GetKeyring(), BelowVersion: 2}))
	if err != nil || des.Msg.GetOldestKeyVersion() != 2 {
		t.Fatalf("DestroyRootKeys: %v, %v", des.Msg, err)
	}
	if _, err := c.Advance(ctx, connect.NewRequest(&keeperv1.AdvanceRequest{Keyring: des.Msg.GetKeyring()})); err != nil {
		t.Fatalf("Advance to the destruction: %v", err)
	}
	_, err = c.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: old.Msg.GetWrapped(), RootKeyVersion: 1}))
	wantReason(t, "unwrap under a destroyed version", err, keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY, "data key is wrapped under root key version 1, which was destroyed")
	if _, err := c.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: rw.Msg.GetWrapped(), RootKeyVersion: 2})); err != nil {
		t.Errorf("rewrapped key after destruction: %v", err)
	}
	// The destroyed version is gone from the stored form too: a fresh
	// Keeper unsealing it holds only version 2.
	fresh := startKeeperOn(t, k.ca, identity.Keeper(td, "2"), tlsconfig.AuthorizeMemberOf(td))
	if err := unseal(t, fresh.nexus(t), password, des.Msg.GetKeyring()); err != nil {
		t.Fatal(err)
	}
	if st := status(t, fresh.nexus(t)); st.GetOldestKeyVersion() != 2 || st.GetActiveKeyVersion() != 2 {
		t.Errorf("fresh Keeper unsealed after the destruction: %v", st)
	}
}

// A Keeper that missed a rotation (it was away when Nexus advanced the
// others) answers stale instead of failing data keys of the new version,
// and catches up from a peer by itself.
func TestStaleKeeperCatchesUpFromPeer(t *testing.T) {
	t.Parallel()
	a := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	sk := initKeyring(t, a.nexus(t), password)
	if err := unseal(t, a.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	b := startKeeperOn(t, a.ca, identity.Keeper(td, "2"), tlsconfig.AuthorizeMemberOf(td))
	if err := unseal(t, b.nexus(t), password, sk); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rot, err := a.nexus(t).Rotate(ctx, connect.NewRequest(&keeperv1.RotateRequest{Keyring: sk}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.nexus(t).Advance(ctx, connect.NewRequest(&keeperv1.AdvanceRequest{Keyring: rot.Msg.GetKeyring()})); err != nil {
		t.Fatal(err)
	}
	gen, err := a.nexus(t).GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: dekID}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.nexus(t).DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 2}))
	wantReason(t, "stale Keeper unwrapping version 2", err, keeperv1.ErrorDetail_REASON_STALE_KEYRING, "root key version 2 is newer")

	loopCtx, cancel := context.WithCancel(ctx)
	var loops sync.WaitGroup
	t.Cleanup(func() { cancel(); loops.Wait() })
	peers := []server.Peer{{Name: a.url, Client: b.peerClientOf(t, a)}}
	loops.Go(func() { b.srv.Reseed(loopCtx, peers, 20*time.Millisecond) })
	deadline := time.Now().Add(10 * time.Second)
	for status(t, b.nexus(t)).GetEpoch() != rot.Msg.GetKeyring().GetEpoch() {
		if time.Now().After(deadline) {
			t.Fatalf("the stale Keeper did not catch up from its peer: %v", status(t, b.nexus(t)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	dec, err := b.nexus(t).DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{DekId: dekID, Wrapped: gen.Msg.GetWrapped(), RootKeyVersion: 2}))
	if err != nil || !bytes.Equal(dec.Msg.GetPlaintext(), gen.Msg.GetPlaintext()) {
		t.Errorf("caught-up Keeper unwrapping version 2: %v", err)
	}
	// It can rotate further itself: it has the keyring key, not only the
	// root keys.
	if _, err := b.nexus(t).Rotate(ctx, connect.NewRequest(&keeperv1.RotateRequest{Keyring: rot.Msg.GetKeyring()})); err != nil {
		t.Errorf("Rotate on the caught-up Keeper: %v", err)
	}
}
