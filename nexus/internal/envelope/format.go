// Package envelope seals values for untrusted storage. A value is encrypted
// with AES-256-GCM under a data key (DEK); data keys are generated and
// wrapped by Keeper and cached here. Every sealed value is bound, through the
// AEAD's additional data, to the identity of the row that holds it, so a
// value copied to another row fails to open.
package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sealed value layout:
//
//	[0]      format: 1 under a data key, 2 under a secret version's own
//	         key (the DEK id then names the data key of the time)
//	[1:17]   DEK id
//	[17:29]  GCM nonce
//	[29:]    ciphertext and 16-byte tag
//
// The header (bytes 0..28) is part of the additional data, so changing the
// DEK id or the version byte also fails authentication.
const (
	formatV1 = 1
	// FormatVersionKey marks a value sealed under a version key.
	FormatVersionKey = 2
	DEKIDSize        = 16
	KeySize          = 32
	nonceSize        = 12
	headerSize       = 1 + DEKIDSize + nonceSize
	tagSize          = 16
)

// DEKID identifies a data key.
type DEKID [DEKIDSize]byte

// ErrOpen is returned when a sealed value does not authenticate: it was
// altered, moved to another row, or sealed under another key.
var ErrOpen = errors.New("sealed value failed authentication")

// Seal encrypts plaintext with aead (the DEK called id), binding aad.
func Seal(aead cipher.AEAD, id DEKID, plaintext, aad []byte) ([]byte, error) {
	return seal(formatV1, aead, id, plaintext, aad)
}

func seal(format byte, aead cipher.AEAD, id DEKID, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, headerSize, headerSize+len(plaintext)+tagSize)
	out[0] = format
	copy(out[1:], id[:])
	if _, err := rand.Read(out[1+DEKIDSize : headerSize]); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(out, out[1+DEKIDSize:headerSize], plaintext, additionalData(out[:headerSize], aad)), nil
}

// KeyID returns the id of the DEK that sealed the value, so the caller can
// fetch the key before calling Open.
func KeyID(sealed []byte) (DEKID, error) {
	var id DEKID
	if len(sealed) < headerSize+tagSize {
		return id, fmt.Errorf("%w: too short", ErrOpen)
	}
	if sealed[0] != formatV1 && sealed[0] != FormatVersionKey {
		return id, fmt.Errorf("%w: unknown format version %d", ErrOpen, sealed[0])
	}
	copy(id[:], sealed[1:1+DEKIDSize])
	return id, nil
}

// Open decrypts a value sealed by Seal with the same key and aad.
func Open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if _, err := KeyID(sealed); err != nil {
		return nil, err
	}
	header := sealed[:headerSize]
	plain, err := aead.Open(nil, header[1+DEKIDSize:], sealed[headerSize:], additionalData(header, aad))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// Format returns a sealed value's format byte (0 when empty).
func Format(sealed []byte) byte {
	if len(sealed) == 0 {
		return 0
	}
	return sealed[0]
}

// NewAEAD returns AES-256-GCM under a 32-byte data key. The AEAD keeps its
// own copy of the key schedule, so the caller may zero key afterwards.
func NewAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func additionalData(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}

// SecretAAD is the row identity of a secret version: a canonical,
// unambiguous encoding of the path and version number.
func SecretAAD(path string, version int64) []byte {
	const label = "spike secret v1\x00"
	b := make([]byte, 0, len(label)+4+len(path)+8)
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(path)))
	b = append(b, path...)
	return binary.BigEndian.AppendUint64(b, uint64(version))
}

// HeadAAD is the identity of a secret's sealed head: its path and
// incarnation.
func HeadAAD(path string, incarnation []byte) []byte {
	const label = "spike secret head v1\x00"
	b := make([]byte, 0, len(label)+4+len(path)+4+len(incarnation))
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(path)))
	b = append(b, path...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(incarnation)))
	return append(b, incarnation...)
}

// ValueAAD is the identity of a secret version's value: its path, the
// secret's incarnation, the version number and who wrote it.
func ValueAAD(path string, incarnation []byte, version int64, createdBy string) []byte {
	const label = "spike secret value v2\x00"
	b := make([]byte, 0, len(label)+4+len(path)+4+len(incarnation)+8+4+len(createdBy))
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(path)))
	b = append(b, path...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(incarnation)))
	b = append(b, incarnation...)
	b = binary.BigEndian.AppendUint64(b, uint64(version))
	b = binary.BigEndian.AppendUint32(b, uint32(len(createdBy)))
	return append(b, createdBy...)
}

// MetadataAAD is the row identity of a secret's custom metadata.
func MetadataAAD(path string) []byte {
	return labelled("spike secret metadata v1\x00", []byte(path))
}

// PolicyAAD is the row identity of a policy.
func PolicyAAD(name string) []byte {
	return labelled("spike policy v1\x00", []byte(name))
}

// PolicyManifestAAD is the identity of the policy manifest, the one row
// that lists the current policy rows.
func PolicyManifestAAD() []byte {
	return labelled("spike policy manifest v1\x00", nil)
}

// TokenAAD is the row identity of an admin token: its lookup hash.
func TokenAAD(lookup []byte) []byte {
	return labelled("spike admin token v1\x00", lookup)
}

// ListTokenAAD binds a listing's page token to the listing it continues:
// the caller's SPIFFE ID, the listed prefix and whether the listing is
// recursive. A token opens only for the same caller and the same listing.
func ListTokenAAD(caller, prefix string, recursive bool) []byte {
	const label = "spike list page token v1\x00"
	b := make([]byte, 0, len(label)+4+len(caller)+4+len(prefix)+1)
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(caller)))
	b = append(b, caller...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(prefix)))
	b = append(b, prefix...)
	if recursive {
		return append(b, 1)
	}
	return append(b, 0)
}

func labelled(label string, id []byte) []byte {
	b := make([]byte, 0, len(label)+4+len(id))
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(id)))
	return append(b, id...)
}
