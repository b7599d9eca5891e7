package keyring

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fastParams are the cheapest Argon2id parameters Validate accepts.
func fastParams(t *testing.T) Params {
	t.Helper()
	p, err := NewParams(1, 8, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	return p
}

// create makes a keyring with a password slot if password is not nil and
// a shares slot unless spec is zero.
func create(t *testing.T, password []byte, spec ShareSpec) (*Unlocked, []Share) {
	t.Helper()
	u, shares, err := Create(password, fastParams(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(u.Drop)
	return u, shares
}

// roundTrip encodes and decodes s, as storing it in the database would.
func roundTrip(t *testing.T, s *Sealed) *Sealed {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var got Sealed
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	return &got
}

func TestCreateAndOpen(t *testing.T) {
	t.Parallel()
	password := []byte("correct horse battery staple")
	tests := []struct {
		name     string
		password []byte
		spec     ShareSpec
	}{
		{"password", password, ShareSpec{}},
		{"shares", nil, ShareSpec{K: 3, N: 5}},
		{"both", password, ShareSpec{K: 2, N: 3}},
	}
	for _, tt := range tests {
		u, shares := create(t, tt.password, tt.spec)
		if len(shares) != tt.spec.N {
			t.Errorf("%s: %d shares, want %d", tt.name, len(shares), tt.spec.N)
		}
		s := roundTrip(t, u.Sealed())
		if s.Epoch() != 1 || u.Epoch() != 1 || !bytes.Equal(s.ID(), u.Keyring().ID()) {
			t.Errorf("%s: epoch %d/%d, id %x, want 1 and %x", tt.name, s.Epoch(), u.Epoch(), s.ID(), u.Keyring().ID())
		}
		if got, ok := s.ShareSpec(); got != tt.spec || ok == tt.spec.IsZero() {
			t.Errorf("%s: ShareSpec = %+v, %v", tt.name, got, ok)
		}
		if p, ok := s.PasswordParams(); ok != (tt.password != nil) || (ok && !cmp.Equal(p, u.Sealed().password.params)) {
			t.Errorf("%s: PasswordParams = %+v, %v", tt.name, p, ok)
		}
		opened := map[string]func() (*Unlocked, error){
			"password": func() (*Unlocked, error) { return OpenWithPassword(s, tt.password) },
			"shares":   func() (*Unlocked, error) { return OpenWithShares(s, shares[len(shares)-tt.spec.K:]) },
		}
		for kind, open := range opened {
			has := map[string]bool{"password": tt.password != nil, "shares": !tt.spec.IsZero()}[kind]
			got, err := open()
			switch {
			case !has && !errors.Is(err, ErrNoSlot):
				t.Errorf("%s: open with %s = %v, want ErrNoSlot", tt.name, kind, err)
			case has && err != nil:
				t.Errorf("%s: open with %s: %v", tt.name, kind, err)
			case has && (!got.Keyring().Equal(u.Keyring()) || got.Epoch() != 1):
				t.Errorf("%s: keyring opened with %s differs", tt.name, kind)
			}
		}
	}
}

func TestCreateRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		password []byte
		params   Params
		spec     ShareSpec
		want     error
	}{
		{"no slot", nil, fastParams(t), ShareSpec{}, ErrInvalidSlots},
		{"empty password, no shares", []byte{}, fastParams(t), ShareSpec{}, ErrInvalidSlots},
		{"k zero", nil, Params{}, ShareSpec{K: 0, N: 3}, ErrInvalidSlots},
		{"k above n", nil, Params{}, ShareSpec{K: 4, N: 3}, ErrInvalidSlots},
		{"n above max", nil, Params{}, ShareSpec{K: 2, N: MaxShares + 1}, ErrInvalidSlots},
		{"negative", nil, Params{}, ShareSpec{K: -1, N: 3}, ErrInvalidSlots},
		{"bad params", []byte("pw"), Params{Time: 1}, ShareSpec{}, ErrInvalidParams},
	}
	for _, tt := range tests {
		if _, _, err := Create(tt.password, tt.params, tt.spec); !errors.Is(err, tt.want) {
			t.Errorf("%s: Create = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestOpenWithWrongPassword(t *testing.T) {
	t.Parallel()
	u, _ := create(t, []byte("password-one"), ShareSpec{K: 1, N: 1})
	for _, pw := range []string{"password-two", "", "password-on", "password-one "} {
		if _, err := OpenWithPassword(u.Sealed(), []byte(pw)); !errors.Is(err, ErrWrongCredentials) {
			t.Errorf("OpenWithPassword(%q) = %v, want ErrWrongCredentials", pw, err)
		}
	}
}

// TestRotateAndDestroy follows a data key through a rotation, a rewrap
// and the destruction of the version it was first wrapped under.
func TestRotateAndDestroy(t *testing.T) {
	t.Parallel()
	password := []byte("password-one")
	u, shares := create(t, password, ShareSpec{K: 2, N: 3})
	want, wrapped, v1, err := u.Keyring().WrapDataKey(dekID(1))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	r, err := u.Rotate()
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Cleanup(r.Drop)
	if diff := cmp.Diff([]uint32{1}, u.Keyring().Versions()); diff != "" {
		t.Errorf("Rotate changed its receiver (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{1, 2}, r.Keyring().Versions()); diff != "" {
		t.Errorf("versions after Rotate (-want +got):\n%s", diff)
	}
	if r.Epoch() != 2 {
		t.Errorf("epoch after Rotate = %d, want 2", r.Epoch())
	}
	// The same credentials open the rotated keyring.
	for _, open := range []func(*Sealed) (*Unlocked, error){
		func(s *Sealed) (*Unlocked, error) { return OpenWithPassword(s, password) },
		func(s *Sealed) (*Unlocked, error) { return OpenWithShares(s, shares[1:]) },
	} {
		got, err := open(roundTrip(t, r.Sealed()))
		if err != nil || !got.Keyring().Equal(r.Keyring()) || got.Epoch() != 2 {
			t.Errorf("open rotated keyring: %v", err)
		}
	}
	if _, err := r.Keyring().UnwrapDataKey(dekID(1), wrapped, v1); err != nil {
		t.Errorf("old version no longer unwraps after Rotate: %v", err)
	}
	rewrapped, v2, err := r.Keyring().RewrapDataKey(dekID(1), wrapped, v1)
	if err != nil || v2 != 2 {
		t.Fatalf("RewrapDataKey = version %d, %v", v2, err)
	}

	d, err := r.DestroyBelow(v2)
	if err != nil {
		t.Fatalf("DestroyBelow: %v", err)
	}
	t.Cleanup(d.Drop)
	if diff := cmp.Diff([]uint32{2}, d.Keyring().Versions()); diff != "" {
		t.Errorf("versions after DestroyBelow (-want +got):\n%s", diff)
	}
	if d.Epoch() != 3 {
		t.Errorf("epoch after DestroyBelow = %d, want 3", d.Epoch())
	}
	opened, err := OpenWithPassword(roundTrip(t, d.Sealed()), password)
	if err != nil {
		t.Fatalf("OpenWithPassword after DestroyBelow: %v", err)
	}
	for name, k := range map[string]*Keyring{"in memory": d.Keyring(), "reopened": opened.Keyring()} {
		if _, err := k.UnwrapDataKey(dekID(1), wrapped, v1); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: destroyed version unwraps: %v", name, err)
		}
		got, err := k.UnwrapDataKey(dekID(1), rewrapped, v2)
		if err != nil {
			t.Fatalf("%s: UnwrapDataKey of the rewrapped key: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: data key (-want +got):\n%s", name, diff)
		}
	}
}

func TestDestroyBelowRejected(t *testing.T) {
	t.Parallel()
	u, _ := create(t, []byte("pw"), ShareSpec{})
	r, err := u.Rotate()
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Cleanup(r.Drop)
	for _, v := range []uint32{0, 1, 3} {
		if _, err := r.DestroyBelow(v); !errors.Is(err, ErrInvalidVersion) {
			t.Errorf("DestroyBelow(%d) = %v, want ErrInvalidVersion", v, err)
		}
	}
}

func TestRekey(t *testing.T) {
	t.Parallel()
	oldPassword, newPassword := []byte("password-one"), []byte("password-two")
	u, oldShares := create(t, oldPassword, ShareSpec{K: 2, N: 3})
	r, newShares, err := u.Rekey(newPassword, fastParams(t), ShareSpec{K: 3, N: 4})
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	t.Cleanup(r.Drop)
	if r.Epoch() != 2 || !r.Keyring().Equal(u.Keyring()) {
		t.Errorf("Rekey: epoch %d, same keys %v; want 2, true", r.Epoch(), r.Keyring().Equal(u.Keyring()))
	}
	if r.key == u.key {
		t.Error("Rekey kept the keyring key")
	}
	s := roundTrip(t, r.Sealed())
	if _, err := OpenWithPassword(s, oldPassword); !errors.Is(err, ErrWrongCredentials) {
		t.Errorf("old password on the rekeyed keyring: %v, want ErrWrongCredentials", err)
	}
	if _, err := OpenWithShares(s, oldShares); !errors.Is(err, ErrInvalidShare) {
		t.Errorf("old shares on the rekeyed keyring: %v, want ErrInvalidShare", err)
	}
	// Old shares that claim the new split still recover the old unseal key.
	forged := append([]Share(nil), oldShares...)
	for i := range forged {
		forged[i].split, forged[i].k, forged[i].n = newShares[0].split, 3, 4
	}
	if _, err := OpenWithShares(s, forged); !errors.Is(err, ErrWrongCredentials) {
		t.Errorf("old shares relabelled for the new split: %v, want ErrWrongCredentials", err)
	}
	// The old slots copied into the new sealed keyring unwrap the old
	// keyring key, which does not open the new root keys.
	withOldSlots := *s
	withOldSlots.password, withOldSlots.shares = u.Sealed().password, u.Sealed().shares
	if _, err := OpenWithPassword(&withOldSlots, oldPassword); !errors.Is(err, ErrTampered) {
		t.Errorf("old password slot copied back: %v, want ErrTampered", err)
	}
	if _, err := OpenWithShares(&withOldSlots, oldShares[:2]); !errors.Is(err, ErrTampered) {
		t.Errorf("old shares slot copied back: %v, want ErrTampered", err)
	}
	for name, open := range map[string]func() (*Unlocked, error){
		"new password": func() (*Unlocked, error) { return OpenWithPassword(s, newPassword) },
		"new shares":   func() (*Unlocked, error) { return OpenWithShares(s, newShares[1:]) },
	} {
		got, err := open()
		if err != nil || !got.Keyring().Equal(u.Keyring()) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Rekey to a password only drops the shares slot.
	p, shares, err := r.Rekey(oldPassword, fastParams(t), ShareSpec{})
	if err != nil || shares != nil {
		t.Fatalf("Rekey to password only: %v, %d shares", err, len(shares))
	}
	t.Cleanup(p.Drop)
	if _, err := OpenWithShares(p.Sealed(), newShares); !errors.Is(err, ErrNoSlot) {
		t.Errorf("shares on a password-only keyring: %v, want ErrNoSlot", err)
	}
	if _, _, err := r.Rekey(nil, Params{}, ShareSpec{}); !errors.Is(err, ErrInvalidSlots) {
		t.Errorf("Rekey to no slot: %v, want ErrInvalidSlots", err)
	}
}

func TestUpgradeV1(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	addVersion(t, k)
	password := []byte("password-one")
	kdfParams, ciphertext, err := Seal(k, password, testParams(t))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, err := UpgradeV1(k.ID(), kdfParams, ciphertext, []byte("wrong"), fastParams(t)); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("UpgradeV1 with a wrong password = %v, want ErrWrongPassword", err)
	}
	if _, err := UpgradeV1(k.ID()[1:], kdfParams, ciphertext, password, fastParams(t)); !errors.Is(err, ErrMalformed) {
		t.Errorf("UpgradeV1 with a short id = %v, want ErrMalformed", err)
	}
	u, err := UpgradeV1(k.ID(), kdfParams, ciphertext, password, fastParams(t))
	if err != nil {
		t.Fatalf("UpgradeV1: %v", err)
	}
	t.Cleanup(u.Drop)
	if u.Epoch() != 1 || !u.Keyring().Equal(k) {
		t.Errorf("upgraded: epoch %d, same keyring %v; want 1, true", u.Epoch(), u.Keyring().Equal(k))
	}
	got, err := OpenWithPassword(roundTrip(t, u.Sealed()), password)
	if err != nil || !got.Keyring().Equal(k) {
		t.Errorf("OpenWithPassword of the upgraded keyring: %v", err)
	}
	if _, ok := u.Sealed().ShareSpec(); ok {
		t.Error("upgraded keyring has a shares slot")
	}
}

func TestSecretRoundTrip(t *testing.T) {
	t.Parallel()
	u, shares := create(t, []byte("password-one"), ShareSpec{K: 2, N: 2})
	r, err := u.Rotate()
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Cleanup(r.Drop)
	b, err := r.MarshalSecret()
	if err != nil {
		t.Fatalf("MarshalSecret: %v", err)
	}
	peer, err := UnmarshalSecret(b)
	if err != nil {
		t.Fatalf("UnmarshalSecret: %v", err)
	}
	t.Cleanup(peer.Drop)
	if !peer.Keyring().Equal(r.Keyring()) || peer.Epoch() != 2 || peer.key != r.key {
		t.Error("peer's keyring differs")
	}
	// The peer can rotate, and the sealed form it makes opens with the
	// shares given at creation.
	next, err := peer.Rotate()
	if err != nil {
		t.Fatalf("peer Rotate: %v", err)
	}
	t.Cleanup(next.Drop)
	got, err := OpenWithShares(roundTrip(t, next.Sealed()), shares)
	if err != nil || got.Epoch() != 3 || !got.Keyring().Equal(next.Keyring()) {
		t.Errorf("open the peer's rotation: epoch %d, %v", got.Epoch(), err)
	}

	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		_, err := UnmarshalSecret(c)
		if !errors.Is(err, ErrTampered) && !errors.Is(err, ErrMalformed) {
			t.Errorf("byte %d flipped: UnmarshalSecret = %v, want ErrTampered or ErrMalformed", i, err)
		}
	}
	for _, c := range [][]byte{nil, b[:1+KeySize], b[:len(b)-1]} {
		if _, err := UnmarshalSecret(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: UnmarshalSecret = %v, want ErrMalformed", len(c), err)
		}
	}
}

func TestUnlockedDrop(t *testing.T) {
	t.Parallel()
	u, _, err := Create([]byte("pw"), fastParams(t), ShareSpec{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	keys := u.Keyring().keys
	u.Drop()
	if u.key != [KeySize]byte{} || keys[0].key != [KeySize]byte{} {
		t.Error("Drop left key material")
	}
	if _, err := u.Rotate(); err == nil {
		t.Error("Rotate after Drop succeeded")
	}
	if _, err := u.DestroyBelow(1); err == nil {
		t.Error("DestroyBelow after Drop succeeded")
	}
	if _, _, err := u.Rekey([]byte("pw"), fastParams(t), ShareSpec{}); err == nil {
		t.Error("Rekey after Drop succeeded")
	}
}

func TestUnlockedRelease(t *testing.T) {
	t.Parallel()
	u, _, err := Create([]byte("pw"), fastParams(t), ShareSpec{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := u.Keyring()
	ring := u.Release()
	t.Cleanup(ring.Drop)
	if ring != want || ring.ActiveVersion() != 1 {
		t.Fatalf("Release returned %p (version %d), want the root keys %p", ring, ring.ActiveVersion(), want)
	}
	if u.key != [KeySize]byte{} {
		t.Error("Release left the keyring key")
	}
	u.Drop()
	if ring.ActiveVersion() != 1 {
		t.Error("Drop after Release dropped the released root keys")
	}
}
