package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/protobuf/proto"

	"github.com/spike-dev/spike/keeper/internal/server"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/identity"
)

const newPassword = "purple elephant umbrella quarry"

const (
	invalidReq = keeperv1.ErrorDetail_REASON_INVALID_REQUEST
	wrongPw    = keeperv1.ErrorDetail_REASON_WRONG_PASSWORD
	wrongShare = keeperv1.ErrorDetail_REASON_WRONG_SHARES
)

// initShares has Keeper create a keyring with password (none if empty) and
// k of n shares.
func initShares(t *testing.T, c keeperv1connect.KeeperServiceClient, pw string, k, n uint32) (*keeperv1.SealedKeyring, [][]byte) {
	t.Helper()
	resp, err := c.Init(t.Context(), connect.NewRequest(&keeperv1.InitRequest{Password: []byte(pw), ShareThreshold: k, ShareCount: n}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if got := len(resp.Msg.GetShares()); got != int(n) {
		t.Fatalf("Init returned %d shares, want %d", got, n)
	}
	return resp.Msg.GetKeyring(), resp.Msg.GetShares()
}

func unsealShares(t *testing.T, c keeperv1connect.KeeperServiceClient, shares [][]byte, sealed *keeperv1.SealedKeyring) error {
	t.Helper()
	_, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Shares: shares, Keyring: sealed}))
	return err
}

// wantReason checks err's code, reason and message prefix: for messages
// that name a random keyring id.
func wantReason(t *testing.T, what string, err error, reason keeperv1.ErrorDetail_Reason, prefix string) {
	t.Helper()
	got := errOf(t, err)
	want := refused(reason, got.Msg)
	if err == nil || got.Code != want.Code || len(got.Reasons) != 1 || got.Reasons[0] != reason || !strings.HasPrefix(got.Msg, prefix) {
		t.Errorf("%s = %+v, want %v %v %q…", what, got, want.Code, reason, prefix)
	}
}

// TestInitWithShares checks a keyring with shares only: k shares unseal,
// k-1 do not, nor do shares of another keyring or a password.
func TestInitWithShares(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed, shares := initShares(t, c, "", 2, 3)
	for i, s := range shares {
		if want := "spike-share-v1:"; !strings.HasPrefix(string(s), want) || !strings.Contains(string(s), ":"+string(rune('1'+i))+"-of-3:k2:") {
			t.Errorf("share %d = %.40q…, want %s<keyring>:%d-of-3:k2:…", i+1, s, want, i+1)
		}
	}
	_, others := initShares(t, c, "", 2, 3)

	wantErr(t, "Unseal with 1 of 2 shares", unsealShares(t, c, shares[:1], sealed),
		refused(invalidReq, "shares: not enough shares: have 1 of the 2 needed"))
	wantErr(t, "Unseal with a share twice", unsealShares(t, c, [][]byte{shares[0], shares[0]}, sealed),
		refused(invalidReq, "shares: invalid share: share 1 given twice"))
	wantReason(t, "Unseal with a share of another keyring", unsealShares(t, c, [][]byte{shares[0], others[1]}, sealed),
		invalidReq, "shares: invalid share: share 2 belongs to keyring ")
	wantErr(t, "Unseal with a mistyped share", unsealShares(t, c, [][]byte{shares[0], []byte("spike-share-v1:")}, sealed),
		refused(invalidReq, "shares: invalid share: not a spike-share-v1:<keyring>:<i>-of-<n>:k<k>:<payload> share"))
	wantErr(t, "Unseal with a password", unseal(t, c, password, sealed),
		refused(invalidReq, "the keyring has no password slot: use the shares"))
	wantErr(t, "Unseal with password and shares", func() error {
		_, err := c.Unseal(t.Context(), connect.NewRequest(&keeperv1.UnsealRequest{Password: []byte(password), Shares: shares, Keyring: sealed}))
		return err
	}(), refused(invalidReq, "give the password or shares, not both"))
	wantStatus(t, c, &keeperv1.StatusResponse{})

	if err := unsealShares(t, c, [][]byte{shares[2], shares[0]}, sealed); err != nil {
		t.Fatalf("Unseal with shares 3 and 1: %v", err)
	}
	wantStatus(t, c, &keeperv1.StatusResponse{Unsealed: true, KeyringId: sealed.GetKeyringId(), ActiveKeyVersion: 1, OldestKeyVersion: 1, Epoch: 1, Source: "unseal"})
}

// TestInitRefused checks the credentials Init refuses.
func TestInitRefused(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	tests := []struct {
		name string
		req  *keeperv1.InitRequest
		want rpcErr
	}{
		{"nothing", &keeperv1.InitRequest{}, refused(invalidReq, "password or shares are required")},
		{"threshold over count", &keeperv1.InitRequest{ShareThreshold: 3, ShareCount: 2},
			refused(invalidReq, "share_threshold and share_count: want 1 ≤ threshold ≤ count ≤ 16, got 3 of 2")},
		{"too many shares", &keeperv1.InitRequest{ShareThreshold: 3, ShareCount: 17},
			refused(invalidReq, "share_threshold and share_count: want 1 ≤ threshold ≤ count ≤ 16, got 3 of 17")},
		{"weak password with shares", &keeperv1.InitRequest{Password: []byte("password1234"), ShareThreshold: 2, ShareCount: 3},
			refused(invalidReq, "password is too easy to guess: estimated 1.1e+04 guesses, want at least 1e+08; add more unrelated words")},
	}
	for _, tt := range tests {
		_, err := c.Init(t.Context(), connect.NewRequest(tt.req))
		wantErr(t, "Init "+tt.name, err, tt.want)
	}
}

// TestRefusedFormat2 checks that an altered format 2 keyring is refused
// before or at opening, never opened.
func TestRefusedFormat2(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed := initKeyring(t, c, password)
	other := initKeyring(t, c, password)
	altered := func(alter func(k *keeperv1.SealedKeyring)) *keeperv1.SealedKeyring {
		k := proto.CloneOf(sealed)
		alter(k)
		return k
	}
	corrupt := keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING
	wantReason(t, "truncated", unseal(t, c, password, altered(func(k *keeperv1.SealedKeyring) { k.Sealed = k.Sealed[:40] })),
		corrupt, "keyring.sealed: malformed sealed keyring: ")
	wantErr(t, "both formats", unseal(t, c, password, altered(func(k *keeperv1.SealedKeyring) { k.Ciphertext = []byte{1} })),
		refused(corrupt, "keyring: both format 1 and format 2 fields are set"))
	wantErr(t, "another id", unseal(t, c, password, altered(func(k *keeperv1.SealedKeyring) { k.KeyringId = other.GetKeyringId() })),
		refused(corrupt, "keyring.sealed is of another keyring than keyring.keyring_id"))
	// The epoch is authenticated with the root keys once the slot opens.
	wantErr(t, "epoch raised", unseal(t, c, password, altered(func(k *keeperv1.SealedKeyring) { k.Sealed[1+16+7] = 9 })),
		refused(corrupt, "keyring: the slot opened but the root keys do not authenticate (altered, or parts of different keyrings)"))
	wantErr(t, "wrong password", unseal(t, c, "not the password", sealed), refused(wrongPw, "wrong password"))
	wantStatus(t, c, &keeperv1.StatusResponse{})
}

// rekey asks Keeper to rekey sealed from the current credentials (pw or
// shares) to newPw and k of n new shares.
func rekey(t *testing.T, c keeperv1connect.KeeperServiceClient, sealed *keeperv1.SealedKeyring, pw string, shares [][]byte, newPw string, k, n uint32) (*keeperv1.RekeyResponse, error) {
	t.Helper()
	resp, err := c.Rekey(t.Context(), connect.NewRequest(&keeperv1.RekeyRequest{
		Keyring: sealed, Password: []byte(pw), Shares: shares,
		NewPassword: []byte(newPw), NewShareThreshold: k, NewShareCount: n,
	}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// TestRekey checks that after a rekey only the new credentials open the
// new sealed keyring, that it holds the same root keys, and that a rekey
// needs the current credentials.
func TestRekey(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed, shares := initShares(t, c, password, 2, 3)

	_, err := rekey(t, c, sealed, "not the password", nil, newPassword, 0, 0)
	wantErr(t, "Rekey with a wrong password", err, refused(wrongPw, "wrong password"))
	_, err = rekey(t, c, sealed, "", shares[:1], newPassword, 0, 0)
	wantErr(t, "Rekey with 1 of 2 shares", err, refused(invalidReq, "shares: not enough shares: have 1 of the 2 needed"))
	_, err = rekey(t, c, sealed, password, nil, "", 0, 0)
	wantErr(t, "Rekey to nothing", err, refused(invalidReq, "new_password or shares are required"))
	_, err = rekey(t, c, sealed, password, nil, "password1234", 0, 0)
	wantErr(t, "Rekey to a weak password", err,
		refused(invalidReq, "password is too easy to guess: estimated 1.1e+04 guesses, want at least 1e+08; add more unrelated words"))

	// Shares → a new password only.
	r1, err := rekey(t, c, sealed, "", shares[1:], newPassword, 0, 0)
	if err != nil {
		t.Fatalf("Rekey with shares: %v", err)
	}
	next := r1.GetKeyring()
	if next.GetEpoch() != 2 || len(r1.GetShares()) != 0 || string(next.GetKeyringId()) != string(sealed.GetKeyringId()) {
		t.Fatalf("Rekey: epoch %d, %d shares, id changed %v; want epoch 2, none, same id", next.GetEpoch(), len(r1.GetShares()),
			string(next.GetKeyringId()) != string(sealed.GetKeyringId()))
	}
	wantErr(t, "Unseal rekeyed with the old password", unseal(t, c, password, next), refused(wrongPw, "wrong password"))
	wantErr(t, "Unseal rekeyed with the old shares", unsealShares(t, c, shares[:2], next),
		refused(invalidReq, "the keyring has no shares slot: use the password"))
	_, err = rekey(t, c, next, password, nil, newPassword, 0, 0)
	wantErr(t, "Rekey rekeyed with the old password", err, refused(wrongPw, "wrong password"))

	// New password → new shares: the old shares are from another split.
	r2, err := rekey(t, c, next, newPassword, nil, "", 2, 4)
	if err != nil {
		t.Fatalf("Rekey with the new password: %v", err)
	}
	third, newShares := r2.GetKeyring(), r2.GetShares()
	if third.GetEpoch() != 3 || len(newShares) != 4 {
		t.Fatalf("Rekey: epoch %d, %d shares; want 3, 4", third.GetEpoch(), len(newShares))
	}
	wantErr(t, "Unseal with the replaced password", unseal(t, c, newPassword, third),
		refused(invalidReq, "the keyring has no password slot: use the shares"))
	wantErr(t, "Unseal with old shares", unsealShares(t, c, shares[:2], third),
		refused(invalidReq, "shares: invalid share: share 1 is from another split of the unseal key (replaced by a rekey?)"))
	// The old sealed keyring still opens with its own credentials: that
	// is what a backup of it holds (README).
	wantStatus(t, c, &keeperv1.StatusResponse{})
	if err := unsealShares(t, c, newShares[2:], third); err != nil {
		t.Fatalf("Unseal with new shares: %v", err)
	}
	// The first keyring, older than one this Keeper opened, is refused:
	// put back in the database, it would bring back the old password.
	wantErr(t, "Unseal of the first sealed keyring with its password", unseal(t, c, password, sealed),
		refused(keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING, "keyring: epoch 1 is older than epoch 3, seen before: the stored keyring was rolled back"))
}

// TestRekeyFormat1 checks that a keyring stored in format 1 is rekeyed
// into format 2 with the password, that shares are refused for it, and
// that a Keeper holding another keyring refuses.
func TestRekeyFormat1(t *testing.T) {
	t.Parallel()
	c := startKeeper(t, tlsconfig.AuthorizeID(nexusID)).nexus(t)
	sealed := sealKeyring(t, password)
	_, shares := initShares(t, c, "", 1, 1)
	_, err := rekey(t, c, sealed, "", shares, newPassword, 0, 0)
	wantErr(t, "Rekey format 1 with shares", err,
		refused(invalidReq, "sealed keyring has no such slot: the keyring was sealed before shares existed and opens only with the password"))
	r, err := rekey(t, c, sealed, password, nil, newPassword, 2, 2)
	if err != nil {
		t.Fatalf("Rekey format 1: %v", err)
	}
	if r.GetKeyring().GetEpoch() != 2 || len(r.GetKeyring().GetKdfParams()) != 0 || len(r.GetShares()) != 2 {
		t.Fatalf("Rekey format 1: epoch %d, kdf params %d bytes, %d shares; want 2, 0, 2", r.GetKeyring().GetEpoch(), len(r.GetKeyring().GetKdfParams()), len(r.GetShares()))
	}
	wantErr(t, "Unseal with the old password", unseal(t, c, password, r.GetKeyring()), refused(wrongPw, "wrong password"))
	if err := unseal(t, c, newPassword, r.GetKeyring()); err != nil {
		t.Fatalf("Unseal with the new password: %v", err)
	}
	_, err = rekey(t, c, initKeyring(t, c, password), password, nil, newPassword, 0, 0)
	wantErr(t, "Rekey another keyring than the one held", err,
		refused(keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, "keeper is unsealed with a different keyring"))
}

// TestRekeyOnReseededKeeper checks that a Keeper that got its keyring from
// a peer rekeys it: Rekey opens the stored keyring with the credentials
// given and needs nothing of how the keyring is held.
func TestRekeyOnReseededKeeper(t *testing.T) {
	t.Parallel()
	holder := startKeeper(t, tlsconfig.AuthorizeMemberOf(td))
	sealed, shares := initShares(t, holder.nexus(t), "", 2, 2)
	if err := unsealShares(t, holder.nexus(t), shares, sealed); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	fresh := startKeeperOn(t, holder.ca, identity.Keeper(td, "2"), tlsconfig.AuthorizeMemberOf(td))
	ctx, cancel := context.WithCancel(t.Context())
	var loops sync.WaitGroup
	t.Cleanup(func() { cancel(); loops.Wait() })
	peers := []server.Peer{{Name: holder.url, Client: fresh.peerClientOf(t, holder)}}
	loops.Go(func() { fresh.srv.Reseed(ctx, peers, 20*time.Millisecond) })
	if _, err := fresh.nexus(t).Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{ExpectedKeyringId: sealed.GetKeyringId()})); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !fresh.srv.Unsealed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fresh Keeper did not re-seed from its peer")
		}
	}
	r, err := rekey(t, fresh.nexus(t), sealed, "", shares, newPassword, 0, 0)
	if err != nil {
		t.Fatalf("Rekey on the re-seeded Keeper: %v", err)
	}
	for _, k := range []*keeper{fresh, holder} {
		if err := unseal(t, k.nexus(t), newPassword, r.GetKeyring()); err != nil {
			t.Errorf("Unseal rekeyed keyring on a Keeper that holds it: %v", err)
		}
	}
}

// Told by Nexus that a rekey reached epoch 2, a Keeper refuses to open the
// stored keyring at epoch 1 (rolled back in the database), and a later
// Status naming a lower epoch does not lower the floor.
func TestRolledBackKeyringRefused(t *testing.T) {
	t.Parallel()
	k := startKeeper(t, tlsconfig.AuthorizeID(nexusID))
	c := k.nexus(t)
	sk := initKeyring(t, c, password)
	status := func(floor uint64) {
		t.Helper()
		if _, err := c.Status(t.Context(), connect.NewRequest(&keeperv1.StatusRequest{ExpectedKeyringId: sk.GetKeyringId(), MinEpoch: floor})); err != nil {
			t.Fatal(err)
		}
	}
	status(2)
	status(0)
	err := unseal(t, c, password, sk)
	wantErr(t, "unseal of a rolled-back keyring", err,
		refused(keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING, "keyring: epoch 1 is older than epoch 2, seen before: the stored keyring was rolled back"))
}
