package keyring

import (
	"crypto/hpke"
	"errors"
	"fmt"
)

// shareInfo is the HPKE info of a keyring handed from one Keeper to
// another; the keyring id follows it, so a keyring sealed for one id does
// not open as another.
const shareInfo = "spike keyring share v1"

// unlockedShareInfo is the HPKE info of an unlocked keyring (keyring key
// and sealed form, MarshalSecret) handed to a peer.
const unlockedShareInfo = "spike unlocked keyring share v2"

// ErrShare reports a keyring from a peer that does not open with the
// request's private key, is not the keyring asked for, or does not decode.
var ErrShare = errors.New("keyring from peer does not open")

// The HPKE suite of keyring shares: hybrid post-quantum KEM, HKDF-SHA256,
// AES-256-GCM.
var (
	shareKEM  = hpke.MLKEM768X25519()
	shareKDF  = hpke.HKDFSHA256()
	shareAEAD = hpke.AES256GCM()
)

// ShareRequest is a one-time HPKE key pair a Keeper makes to receive a
// keyring from a peer. Its private key never leaves the process.
type ShareRequest struct {
	priv hpke.PrivateKey
}

// NewShareRequest makes a fresh key pair for one request.
func NewShareRequest() (*ShareRequest, error) {
	priv, err := shareKEM.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate share key pair: %w", err)
	}
	return &ShareRequest{priv: priv}, nil
}

// PublicKey is what the request sends to the peer.
func (r *ShareRequest) PublicKey() []byte { return r.priv.PublicKey().Bytes() }

// Share seals the keyring to a peer's public key, bound to its id.
func (k *Keyring) Share(publicKey []byte) ([]byte, error) {
	pub, err := shareKEM.NewPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("peer public key: %w", err)
	}
	keys, err := k.encodeKeys()
	if err != nil {
		return nil, err
	}
	defer clear(keys)
	return hpke.Seal(pub, shareKDF, shareAEAD, shareInfoFor(k.id[:]), keys)
}

// Open opens a keyring a peer sealed to this request with Share, and
// checks that it is the keyring id.
func (r *ShareRequest) Open(id, sealed []byte) (*Keyring, error) {
	if len(id) != IDSize {
		return nil, fmt.Errorf("%w: id is %d bytes, want %d", ErrShare, len(id), IDSize)
	}
	keys, err := hpke.Open(r.priv, shareKDF, shareAEAD, shareInfoFor(id), sealed)
	if err != nil {
		return nil, ErrShare
	}
	defer clear(keys)
	k := &Keyring{}
	copy(k.id[:], id)
	if err := k.decodeKeys(keys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	return k, nil
}

func shareInfoFor(id []byte) []byte {
	return append([]byte(shareInfo), id...)
}

// Share seals u (its keyring key and sealed form, so the peer learns the
// epoch and can follow later rotations) to a peer's public key, bound to
// its id.
func (u *Unlocked) Share(publicKey []byte) ([]byte, error) {
	pub, err := shareKEM.NewPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("peer public key: %w", err)
	}
	secret, err := u.MarshalSecret()
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	return hpke.Seal(pub, shareKDF, shareAEAD, append([]byte(unlockedShareInfo), u.sealed.id[:]...), secret)
}

// OpenUnlocked opens what a peer sealed to this request with
// Unlocked.Share, and checks that it is keyring id. A share made by
// Keyring.Share (a peer holding a format 1 keyring) is ErrShare: use Open.
func (r *ShareRequest) OpenUnlocked(id, sealed []byte) (*Unlocked, error) {
	if len(id) != IDSize {
		return nil, fmt.Errorf("%w: id is %d bytes, want %d", ErrShare, len(id), IDSize)
	}
	secret, err := hpke.Open(r.priv, shareKDF, shareAEAD, append([]byte(unlockedShareInfo), id...), sealed)
	if err != nil {
		return nil, ErrShare
	}
	defer clear(secret)
	u, err := UnmarshalSecret(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if [IDSize]byte(id) != u.sealed.id {
		u.Drop()
		return nil, fmt.Errorf("%w: another keyring than asked for", ErrShare)
	}
	return u, nil
}
