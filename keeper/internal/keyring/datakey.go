package keyring

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// dekLabel separates wrapped data keys from every other use of AES-GCM in
// SPIKE.
const dekLabel = "spike dek v1"

// DEKIDSize is the length of a data key ID.
const DEKIDSize = 16

// ErrInvalidDEKID reports a data key ID that is not DEKIDSize bytes.
var ErrInvalidDEKID = errors.New("data key id must be 16 bytes")

// ErrUnwrap reports a wrapped data key that does not authenticate under the
// named root key version, or a root key version the keyring does not hold.
var ErrUnwrap = errors.New("data key does not unwrap")

// WrapDataKey generates a random data key and wraps it with AES-256-GCM
// under the active root key. It returns the data key in the clear, the
// nonce followed by the ciphertext, and the root key version used. The
// additional data binds the keyring ID, the version and dekID.
func (k *Keyring) WrapDataKey(dekID []byte) (plaintext, wrapped []byte, rootKeyVersion uint32, err error) {
	if len(dekID) != DEKIDSize {
		return nil, nil, 0, ErrInvalidDEKID
	}
	if len(k.keys) == 0 {
		return nil, nil, 0, errDropped
	}
	plaintext = make([]byte, KeySize)
	if _, err := rand.Read(plaintext); err != nil {
		return nil, nil, 0, fmt.Errorf("read data key: %w", err)
	}
	wrapped, rootKeyVersion, err = k.wrapActive(dekID, plaintext)
	if err != nil {
		clear(plaintext)
		return nil, nil, 0, err
	}
	return plaintext, wrapped, rootKeyVersion, nil
}

// UnwrapDataKey returns the data key that WrapDataKey wrapped for dekID
// under rootKeyVersion. Any mismatch returns ErrUnwrap.
func (k *Keyring) UnwrapDataKey(dekID, wrapped []byte, rootKeyVersion uint32) ([]byte, error) {
	if len(dekID) != DEKIDSize {
		return nil, ErrInvalidDEKID
	}
	if len(k.keys) == 0 {
		return nil, errDropped
	}
	rk, ok := k.key(rootKeyVersion)
	if !ok {
		return nil, fmt.Errorf("root key version %d: %w", rootKeyVersion, ErrUnwrap)
	}
	aead, err := newGCM(rk.key[:])
	if err != nil {
		return nil, err
	}
	if len(wrapped) != aead.NonceSize()+KeySize+aead.Overhead() {
		return nil, ErrUnwrap
	}
	nonce, sealed := wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():]
	plaintext, err := aead.Open(nil, nonce, sealed, k.dekAAD(rootKeyVersion, dekID))
	if err != nil {
		return nil, ErrUnwrap
	}
	return plaintext, nil
}

// RewrapDataKey unwraps a data key wrapped for dekID under version and
// wraps the same key under the active root key version, returning the new
// wrapped form and version; the key itself never leaves the keyring. A
// wrapped key that does not unwrap is ErrUnwrap.
func (k *Keyring) RewrapDataKey(dekID, wrapped []byte, version uint32) (newWrapped []byte, newVersion uint32, err error) {
	plaintext, err := k.UnwrapDataKey(dekID, wrapped, version)
	if err != nil {
		return nil, 0, err
	}
	defer clear(plaintext)
	return k.wrapActive(dekID, plaintext)
}

// wrapActive wraps plaintext for dekID under the active root key: nonce,
// then AES-GCM with the data key's additional data.
func (k *Keyring) wrapActive(dekID, plaintext []byte) ([]byte, uint32, error) {
	rk := &k.keys[len(k.keys)-1]
	aead, err := newGCM(rk.key[:])
	if err != nil {
		return nil, 0, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, 0, fmt.Errorf("read nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, k.dekAAD(rk.version, dekID)), rk.version, nil
}

// dekAAD is the additional data of a wrapped data key: label, keyring ID,
// root key version, data key ID — all fixed length.
func (k *Keyring) dekAAD(version uint32, dekID []byte) []byte {
	aad := make([]byte, 0, len(dekLabel)+IDSize+4+DEKIDSize)
	aad = append(aad, dekLabel...)
	aad = append(aad, k.id[:]...)
	aad = binary.BigEndian.AppendUint32(aad, version)
	return append(aad, dekID...)
}
