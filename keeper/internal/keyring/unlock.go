package keyring

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math"
)

// secretFormat is the format version of MarshalSecret's encoding.
const secretFormat = 1

// ErrInvalidVersion reports a DestroyBelow that would destroy the active
// root key version or nothing at all.
var ErrInvalidVersion = errors.New("invalid root key version")

// Unlocked is an opened keyring as Keeper holds it: the root keys, the
// keyring key that seals them, and the sealed form they correspond to. It
// is immutable: Rotate, DestroyBelow and Rekey return a new Unlocked and
// leave the receiver as it was, so Keeper can keep serving from the old one
// until the new sealed form is stored, then switch and Drop the old. It is
// safe for concurrent use except Drop.
type Unlocked struct {
	ring   *Keyring
	key    [KeySize]byte // the keyring key
	sealed *Sealed
}

// Create makes a new keyring (random ID, root key version 1) and seals it
// at epoch 1 with a password slot, if password is not empty, and a shares
// slot, unless shares is zero; at least one is required. It returns the
// shares of the unseal key, to be shown once and then dropped.
func Create(password []byte, params Params, shares ShareSpec) (*Unlocked, []Share, error) {
	ring, err := New()
	if err != nil {
		return nil, nil, err
	}
	u, out, err := seal(ring, 1, password, params, shares)
	if err != nil {
		ring.Drop()
		return nil, nil, err
	}
	return u, out, nil
}

// UpgradeV1 opens a keyring sealed by Seal (format 1) and seals it again
// in format 2 with a password slot for the same password under params. A
// format 1 keyring counts as epoch 0, so the result is epoch 1. Errors are
// Open's: ErrWrongPassword or ErrMalformed.
func UpgradeV1(keyringID, kdfParams, ciphertext, password []byte, params Params) (*Unlocked, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: empty password", ErrInvalidSlots)
	}
	ring, err := Open(keyringID, kdfParams, ciphertext, password)
	if err != nil {
		return nil, err
	}
	u, _, err := seal(ring, 1, password, params, ShareSpec{})
	if err != nil {
		ring.Drop()
		return nil, err
	}
	return u, nil
}

// OpenWithPassword opens s's password slot. A wrong password or an altered
// slot is ErrWrongCredentials; a keyring without a password slot is
// ErrNoSlot; root keys that do not authenticate once the slot opened are
// ErrTampered.
func OpenWithPassword(s *Sealed, password []byte) (*Unlocked, error) {
	if s.password == nil {
		return nil, fmt.Errorf("%w: no password slot", ErrNoSlot)
	}
	meta, err := s.password.meta()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	kek, err := kekAEAD(password, s.password.params)
	if err != nil {
		return nil, err
	}
	u := &Unlocked{sealed: s}
	if err := unwrapKey(kek, s.password.wrapped, slotAAD(s.id, passwordSlot, meta), &u.key); err != nil {
		return nil, err
	}
	return u.open()
}

// OpenWithShares opens s's shares slot with at least k of its shares. A
// share of another keyring or another split, a share given twice, or a
// share that does not match the slot's k and n is ErrInvalidShare (the
// message names the share); fewer than k is ErrNotEnoughShares; shares
// that recover a wrong unseal key, or an altered slot, are
// ErrWrongCredentials; otherwise as OpenWithPassword. Only the first k
// shares enter the recovery: a wrong value in a share beyond them goes
// unnoticed.
func OpenWithShares(s *Sealed, shares []Share) (*Unlocked, error) {
	sh := s.shares
	if sh == nil {
		return nil, fmt.Errorf("%w: no shares slot", ErrNoSlot)
	}
	for i := range shares {
		x := &shares[i]
		switch {
		case [idPrefixSize]byte(s.id[:idPrefixSize]) != x.idPrefix:
			return nil, fmt.Errorf("%w: share %d belongs to keyring %x…, not %x…", ErrInvalidShare, x.index, x.idPrefix, s.id[:idPrefixSize])
		case x.split != sh.split:
			return nil, fmt.Errorf("%w: share %d is from another split of the unseal key (replaced by a rekey?)", ErrInvalidShare, x.index)
		case x.k != sh.k || x.n != sh.n:
			return nil, fmt.Errorf("%w: share %d is from a %d-of-%d split, the keyring's is %d-of-%d", ErrInvalidShare, x.index, x.k, x.n, sh.k, sh.n)
		}
	}
	unsealKey, err := recoverUnsealKey(shares, int(sh.k))
	if err != nil {
		return nil, err
	}
	defer clear(unsealKey)
	return openSharesSlot(s, unsealKey)
}

// openSharesSlot opens s's shares slot with a recovered unseal key.
func openSharesSlot(s *Sealed, unsealKey []byte) (*Unlocked, error) {
	kek, err := sharesKEK(unsealKey, s.id, s.shares.split)
	if err != nil {
		return nil, err
	}
	u := &Unlocked{sealed: s}
	if err := unwrapKey(kek, s.shares.wrapped, slotAAD(s.id, sharesSlot, s.shares.meta()), &u.key); err != nil {
		return nil, err
	}
	return u.open()
}

// open decrypts u.sealed's root keys under u.key into u.ring, zeroing the
// keyring key if it fails.
func (u *Unlocked) open() (*Unlocked, error) {
	ring, err := u.sealed.openKeys(u.key[:])
	if err != nil {
		clear(u.key[:])
		return nil, err
	}
	u.ring = ring
	return u, nil
}

// Keyring returns the root keys. It stays valid until u is dropped.
func (u *Unlocked) Keyring() *Keyring { return u.ring }

// Sealed returns the sealed form of u, to be stored. It must not be
// modified.
func (u *Unlocked) Sealed() *Sealed { return u.sealed }

// Epoch returns u's epoch, the same as its sealed form's.
func (u *Unlocked) Epoch() uint64 { return u.sealed.epoch }

// Rotate returns u with a new random root key version as the active one,
// at the next epoch, sealed under the same keyring key and slots.
func (u *Unlocked) Rotate() (*Unlocked, error) {
	ring, err := u.ring.withNewVersion()
	if err != nil {
		return nil, err
	}
	return u.next(ring)
}

// DestroyBelow returns u without the root key versions below version, at
// the next epoch. version must not exceed the active version, and some
// version must lie below it; otherwise ErrInvalidVersion.
func (u *Unlocked) DestroyBelow(version uint32) (*Unlocked, error) {
	if len(u.ring.keys) == 0 {
		return nil, errDropped
	}
	if active := u.ring.ActiveVersion(); version > active {
		return nil, fmt.Errorf("%w: %d is above the active version %d", ErrInvalidVersion, version, active)
	}
	from := 0
	for from < len(u.ring.keys) && u.ring.keys[from].version < version {
		from++
	}
	if from == 0 {
		return nil, fmt.Errorf("%w: no version below %d", ErrInvalidVersion, version)
	}
	return u.next(u.ring.clone(from))
}

// ErrNotNewer reports an Advance to a sealed keyring that is not a newer
// epoch of the keyring held.
var ErrNotNewer = errors.New("not a newer epoch of the keyring held")

// Advance opens s, a newer epoch of u's keyring made by Rotate or
// DestroyBelow (on any Keeper holding the same keyring key), with u's
// keyring key, and returns it unlocked; u is unchanged. Another keyring
// or an epoch not above u's is ErrNotNewer; a keyring whose root keys u's
// keyring key does not open (a rekey replaced the keyring key, or s was
// altered) is ErrTampered.
func (u *Unlocked) Advance(s *Sealed) (*Unlocked, error) {
	if s.id != u.sealed.id || s.epoch <= u.sealed.epoch {
		return nil, fmt.Errorf("%w: epoch %d, holding %d", ErrNotNewer, s.epoch, u.sealed.epoch)
	}
	return u.Reopen(s)
}

// Reopen opens s, a sealed form of u's keyring at any epoch, with u's
// keyring key; u is unchanged. Another keyring is ErrNotNewer; root keys
// that u's keyring key does not open are ErrTampered.
func (u *Unlocked) Reopen(s *Sealed) (*Unlocked, error) {
	if s.id != u.sealed.id {
		return nil, fmt.Errorf("%w: another keyring", ErrNotNewer)
	}
	ring, err := s.openKeys(u.key[:])
	if err != nil {
		return nil, err
	}
	return &Unlocked{ring: ring, key: u.key, sealed: s}, nil
}

// Rekey returns u's root keys sealed under a new keyring key with new
// slots, as Create makes them, at the next epoch. The old slots wrap the
// old keyring key, so neither they nor the old credentials open the result.
func (u *Unlocked) Rekey(password []byte, params Params, shares ShareSpec) (*Unlocked, []Share, error) {
	if len(u.ring.keys) == 0 {
		return nil, nil, errDropped
	}
	if u.sealed.epoch == math.MaxUint64 {
		return nil, nil, errors.New("epoch exhausted")
	}
	ring := u.ring.clone(0)
	v, out, err := seal(ring, u.sealed.epoch+1, password, params, shares)
	if err != nil {
		ring.Drop()
		return nil, nil, err
	}
	return v, out, nil
}

// next seals ring at u's next epoch under u's keyring key and slots.
func (u *Unlocked) next(ring *Keyring) (*Unlocked, error) {
	if u.sealed.epoch == math.MaxUint64 {
		ring.Drop()
		return nil, errors.New("epoch exhausted")
	}
	s := &Sealed{id: u.sealed.id, epoch: u.sealed.epoch + 1, password: u.sealed.password, shares: u.sealed.shares}
	if err := s.sealKeys(ring, u.key[:]); err != nil {
		ring.Drop()
		return nil, err
	}
	return &Unlocked{ring: ring, key: u.key, sealed: s}, nil
}

// Release zeroes the keyring key and returns the root keys, for a holder
// that needs only them (to wrap data keys). u cannot be used afterwards;
// the caller drops the Keyring.
func (u *Unlocked) Release() *Keyring {
	clear(u.key[:])
	ring := u.ring
	u.ring = nil
	return ring
}

// Drop zeroes the keyring key and the root keys. u cannot be used
// afterwards.
func (u *Unlocked) Drop() {
	clear(u.key[:])
	if u.ring != nil {
		u.ring.Drop()
	}
}

// MarshalSecret encodes u for a peer Keeper: a format byte (1), the keyring
// key, then the sealed form (Sealed.MarshalBinary), whose root keys the
// keyring key opens. The result is secret; send it only to a peer Keeper,
// encrypted, and clear it afterwards.
func (u *Unlocked) MarshalSecret() ([]byte, error) {
	sealed, err := u.sealed.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+KeySize+len(sealed))
	b = append(b, secretFormat)
	b = append(b, u.key[:]...)
	return append(b, sealed...), nil
}

// UnmarshalSecret decodes what MarshalSecret encoded and opens the root
// keys with the keyring key in it: an encoding that does not decode is
// ErrMalformed, root keys that do not authenticate are ErrTampered. The
// caller clears b.
func UnmarshalSecret(b []byte) (*Unlocked, error) {
	if len(b) < 1+KeySize || b[0] != secretFormat {
		return nil, fmt.Errorf("%w: not an unlocked keyring", ErrMalformed)
	}
	var s Sealed
	if err := s.UnmarshalBinary(b[1+KeySize:]); err != nil {
		return nil, err
	}
	u := &Unlocked{sealed: &s}
	copy(u.key[:], b[1:1+KeySize])
	return u.open()
}

// seal makes an Unlocked of ring at epoch with a fresh keyring key and the
// slots asked for, returning the shares of a shares slot.
func seal(ring *Keyring, epoch uint64, password []byte, params Params, spec ShareSpec) (*Unlocked, []Share, error) {
	if len(password) == 0 && spec.IsZero() {
		return nil, nil, fmt.Errorf("%w: need a password or shares", ErrInvalidSlots)
	}
	if !spec.IsZero() {
		if err := spec.validate(); err != nil {
			return nil, nil, err
		}
	}
	u := &Unlocked{ring: ring, sealed: &Sealed{id: ring.id, epoch: epoch}}
	if _, err := rand.Read(u.key[:]); err != nil {
		return nil, nil, fmt.Errorf("read keyring key: %w", err)
	}
	fail := func(err error) (*Unlocked, []Share, error) {
		clear(u.key[:])
		return nil, nil, err
	}
	if len(password) > 0 {
		p := &passwordSlotData{params: params}
		meta, err := p.meta()
		if err != nil {
			return fail(err)
		}
		kek, err := kekAEAD(password, params)
		if err != nil {
			return fail(err)
		}
		if p.wrapped, err = wrapKey(kek, u.key[:], slotAAD(ring.id, passwordSlot, meta)); err != nil {
			return fail(err)
		}
		u.sealed.password = p
	}
	var shares []Share
	if !spec.IsZero() {
		unsealKey, split, out, err := newUnsealKey(ring.id, spec)
		if err != nil {
			return fail(err)
		}
		shares = out
		sh := &sharesSlotData{k: uint8(spec.K), n: uint8(spec.N), split: split}
		kek, err := sharesKEK(unsealKey, ring.id, split)
		clear(unsealKey)
		if err == nil {
			sh.wrapped, err = wrapKey(kek, u.key[:], slotAAD(ring.id, sharesSlot, sh.meta()))
		}
		if err != nil {
			dropShares(shares)
			return fail(err)
		}
		u.sealed.shares = sh
	}
	if err := u.sealed.sealKeys(ring, u.key[:]); err != nil {
		dropShares(shares)
		return fail(err)
	}
	return u, shares, nil
}
