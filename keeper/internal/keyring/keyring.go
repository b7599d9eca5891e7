// Package keyring holds SPIKE's root keys in memory, seals them under a key
// derived from the admin password, and wraps data keys under them. It does
// no I/O: Keeper's server decides where sealed keyrings and data keys go.
package keyring

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// KeySize is the length of a root key and of a data key: AES-256.
const KeySize = 32

// IDSize is the length of a keyring ID.
const IDSize = 16

// keysVersion is the format version of the encoded key list that a sealed
// keyring carries.
const keysVersion = 1

// maxKeys bounds the number of root key versions in one keyring.
const maxKeys = 1 << 16

// errDropped reports use of a keyring after Drop.
var errDropped = errors.New("keyring dropped")

// rootKey is one version of the root key.
type rootKey struct {
	version uint32
	key     [KeySize]byte
}

// Keyring is a set of root key versions identified by a random ID. The
// newest version is active: it wraps new data keys; older versions only
// unwrap. A Keyring is safe for concurrent reads; Drop must not run
// concurrently with other methods.
type Keyring struct {
	id   [IDSize]byte
	keys []rootKey // ascending by version, never empty until Drop
}

// New generates a keyring with a random ID and one random root key,
// version 1.
func New() (*Keyring, error) {
	k := &Keyring{keys: make([]rootKey, 1)}
	k.keys[0].version = 1
	if _, err := rand.Read(k.id[:]); err != nil {
		return nil, fmt.Errorf("read keyring id: %w", err)
	}
	if _, err := rand.Read(k.keys[0].key[:]); err != nil {
		return nil, fmt.Errorf("read root key: %w", err)
	}
	return k, nil
}

// ID returns a copy of the keyring's identifier.
func (k *Keyring) ID() []byte {
	return append([]byte(nil), k.id[:]...)
}

// ActiveVersion returns the version of the root key that wraps new data
// keys, or 0 after Drop.
func (k *Keyring) ActiveVersion() uint32 {
	if len(k.keys) == 0 {
		return 0
	}
	return k.keys[len(k.keys)-1].version
}

// Versions returns the root key versions the keyring holds, ascending; the
// last is active. It is empty after Drop.
func (k *Keyring) Versions() []uint32 {
	v := make([]uint32, len(k.keys))
	for i := range k.keys {
		v[i] = k.keys[i].version
	}
	return v
}

// Equal reports whether k and o have the same ID and the same root keys,
// comparing key material in constant time.
func (k *Keyring) Equal(o *Keyring) bool {
	if k.id != o.id || len(k.keys) != len(o.keys) {
		return false
	}
	same := 1
	for i := range k.keys {
		same &= subtle.ConstantTimeEq(int32(k.keys[i].version), int32(o.keys[i].version))
		same &= subtle.ConstantTimeCompare(k.keys[i].key[:], o.keys[i].key[:])
	}
	return same == 1
}

// Drop zeroes the root keys. The keyring cannot be used afterwards.
func (k *Keyring) Drop() {
	for i := range k.keys {
		clear(k.keys[i].key[:])
	}
	k.keys = nil
}

// clone returns a keyring with the same ID and copies of the root keys
// from index from on, plus room for one more.
func (k *Keyring) clone(from int) *Keyring {
	c := &Keyring{id: k.id, keys: make([]rootKey, 0, len(k.keys)-from+1)}
	c.keys = append(c.keys, k.keys[from:]...)
	return c
}

// withNewVersion returns a copy of k with a random root key appended as
// the new active version.
func (k *Keyring) withNewVersion() (*Keyring, error) {
	if len(k.keys) == 0 {
		return nil, errDropped
	}
	active := k.ActiveVersion()
	if active == math.MaxUint32 || len(k.keys) >= maxKeys {
		return nil, errors.New("keyring holds its last possible root key version")
	}
	c := k.clone(0)
	rk := rootKey{version: active + 1}
	if _, err := rand.Read(rk.key[:]); err != nil {
		c.Drop()
		return nil, fmt.Errorf("read root key: %w", err)
	}
	c.keys = append(c.keys, rk)
	clear(rk.key[:])
	return c, nil
}

// key returns the root key with the given version.
func (k *Keyring) key(version uint32) (*rootKey, bool) {
	for i := range k.keys {
		if k.keys[i].version == version {
			return &k.keys[i], true
		}
	}
	return nil, false
}

// encodeKeys encodes the root keys: a format version byte, a big-endian
// uint32 count, then per key a big-endian uint32 version and the key.
func (k *Keyring) encodeKeys() ([]byte, error) {
	if len(k.keys) == 0 {
		return nil, errDropped
	}
	b := make([]byte, 0, 1+4+len(k.keys)*(4+KeySize))
	b = append(b, keysVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(k.keys)))
	for _, rk := range k.keys {
		b = binary.BigEndian.AppendUint32(b, rk.version)
		b = append(b, rk.key[:]...)
	}
	return b, nil
}

// decodeKeys reads root keys encoded by encodeKeys into k. Versions must be
// positive and strictly ascending.
func (k *Keyring) decodeKeys(b []byte) error {
	if len(b) < 5 || b[0] != keysVersion {
		return errors.New("unknown key list format")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	b = b[5:]
	if n == 0 || n > maxKeys || uint64(len(b)) != uint64(n)*(4+KeySize) {
		return errors.New("bad key list length")
	}
	keys := make([]rootKey, n)
	var prev uint32
	for i := range keys {
		keys[i].version = binary.BigEndian.Uint32(b)
		copy(keys[i].key[:], b[4:4+KeySize])
		b = b[4+KeySize:]
		if keys[i].version <= prev {
			for j := range keys {
				clear(keys[j].key[:])
			}
			return errors.New("key versions not ascending")
		}
		prev = keys[i].version
	}
	k.keys = keys
	return nil
}

// OldestVersion returns the lowest root key version the keyring holds, or
// 0 after Drop.
func (k *Keyring) OldestVersion() uint32 {
	if len(k.keys) == 0 {
		return 0
	}
	return k.keys[0].version
}

// Holds reports whether the keyring holds root key version v.
func (k *Keyring) Holds(v uint32) bool {
	_, ok := k.key(v)
	return ok
}
