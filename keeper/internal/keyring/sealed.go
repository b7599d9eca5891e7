package keyring

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Labels that separate the AES-GCM uses of the v2 sealed keyring from each
// other and from everything else in SPIKE.
const (
	keysLabel  = "spike keyring v2"
	slotLabel  = "spike keyring slot v2"
	sharesInfo = "spike shares slot v2"
)

// sealedFormat is the format version of an encoded Sealed. Format 1 is the
// keyring sealed by Seal, stored as three separate values.
const sealedFormat = 2

// Slot kinds, in the order they are encoded.
const (
	passwordSlot = 1
	sharesSlot   = 2
)

// wrappedKeySize is the length of a keyring key wrapped in a slot: nonce,
// key, tag.
const wrappedKeySize = 12 + KeySize + 16

// Bounds on the encoded root keys: nonce, key list header, one to maxKeys
// keys, tag.
const (
	minKeysSize = 12 + 5 + (4 + KeySize) + 16
	maxKeysSize = 12 + 5 + maxKeys*(4+KeySize) + 16
)

// ErrWrongCredentials reports that no slot of a sealed keyring opened with
// the password or shares given: they are wrong, or the slot was altered.
// The two cannot be told apart.
var ErrWrongCredentials = errors.New("wrong password or shares, or altered keyring slot")

// ErrTampered reports a sealed keyring whose slot opened but whose root
// keys did not authenticate: its ID, epoch, slots or keys were altered, or
// parts of different sealed keyrings were put together.
var ErrTampered = errors.New("sealed keyring was altered")

// ErrNoSlot reports that a sealed keyring has no slot of the kind asked for:
// a password for a keyring unsealed only with shares, or the reverse.
var ErrNoSlot = errors.New("sealed keyring has no such slot")

// ErrInvalidSlots reports a request for slots that cannot be made: none at
// all, or shares outside 1 ≤ k ≤ n ≤ MaxShares.
var ErrInvalidSlots = errors.New("invalid unlock slots")

// Sealed is a keyring at rest, format 2. Its root keys are encrypted under a
// random keyring key, and each slot encrypts the keyring key under a key
// derived from one credential: the admin password (Argon2id) or an unseal
// key split into shares (HKDF-SHA256). A Sealed is immutable once made or
// decoded; its accessors read unauthenticated values until it is opened.
//
// Each slot's additional data binds the keyring ID, the slot kind and the
// slot's parameters, so a slot moved to another keyring or given weaker
// parameters does not open. The root keys' additional data binds the
// format, ID, epoch and every slot byte for byte, so once any slot opens,
// an altered epoch, an added, dropped or replaced slot, and root keys from
// another epoch are all ErrTampered.
//
// What a Sealed cannot show: that it is the newest. A whole sealed keyring
// from an earlier epoch, replayed intact, opens with the credentials of its
// time; Keeper must compare Epoch with its peers and with Nexus. Likewise,
// anyone holding an earlier sealed keyring and its credentials (a password
// since changed, shares since replaced) recovers the root keys of that
// epoch, which stay in use until rotated away and destroyed: after a
// credential leak, Rekey, Rotate, rewrap every data key, then DestroyBelow.
type Sealed struct {
	id       [IDSize]byte
	epoch    uint64
	password *passwordSlotData
	shares   *sharesSlotData
	keys     []byte // nonce, then root keys sealed under the keyring key
}

// passwordSlotData is the keyring key wrapped under an Argon2id key.
type passwordSlotData struct {
	params  Params
	wrapped []byte
}

// sharesSlotData is the keyring key wrapped under a key derived from an
// unseal key split k of n.
type sharesSlotData struct {
	k, n    uint8
	split   [splitIDSize]byte
	wrapped []byte
}

// ID returns a copy of the keyring's identifier.
func (s *Sealed) ID() []byte { return append([]byte(nil), s.id[:]...) }

// Epoch returns the sealed keyring's epoch: 1 when created or upgraded
// from format 1, one more on every rotation, destruction or rekey.
func (s *Sealed) Epoch() uint64 { return s.epoch }

// PasswordParams returns the Argon2id parameters of the password slot, and
// whether there is one.
func (s *Sealed) PasswordParams() (Params, bool) {
	if s.password == nil {
		return Params{}, false
	}
	p := s.password.params
	p.Salt = append([]byte(nil), p.Salt...)
	return p, true
}

// ShareSpec returns the split of the shares slot, and whether there is one.
func (s *Sealed) ShareSpec() (ShareSpec, bool) {
	if s.shares == nil {
		return ShareSpec{}, false
	}
	return ShareSpec{K: int(s.shares.k), N: int(s.shares.n)}, true
}

// MarshalBinary encodes s. All integers are big-endian:
//
//	format   1 byte, 2
//	id       16 bytes
//	epoch    8 bytes, at least 1
//	count    1 byte, 1 or 2 slots, kinds strictly ascending
//	per slot kind (1 byte), body length (2 bytes), body:
//	  kind 1, password: Params.MarshalBinary, wrapped keyring key (60 bytes)
//	  kind 2, shares:   k, n (1 byte each), split ID (4 bytes), wrapped keyring key (60 bytes)
//	keys     length (4 bytes), then nonce and AES-GCM of the root key list
//
// A wrapped keyring key is a 12-byte nonce, the 32-byte key encrypted and a
// 16-byte tag.
func (s *Sealed) MarshalBinary() ([]byte, error) {
	b, err := s.header()
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.keys)))
	return append(b, s.keys...), nil
}

// UnmarshalBinary decodes a sealed keyring encoded by MarshalBinary. It
// checks structure and bounds only; any error wraps ErrMalformed and
// leaves s unchanged. Authentication happens when a slot is opened.
func (s *Sealed) UnmarshalBinary(b []byte) error {
	t, err := decodeSealed(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	*s = *t
	return nil
}

func decodeSealed(b []byte) (*Sealed, error) {
	r := reader{b: b}
	if f := r.byte(); f != sealedFormat {
		return nil, fmt.Errorf("format %d, want %d", f, sealedFormat)
	}
	t := &Sealed{}
	copy(t.id[:], r.bytes(IDSize))
	t.epoch = r.uint64()
	count := r.byte()
	if r.short {
		return nil, errors.New("truncated header")
	}
	if t.epoch == 0 {
		return nil, errors.New("epoch 0")
	}
	if count == 0 || count > 2 {
		return nil, fmt.Errorf("%d slots, want 1 or 2", count)
	}
	var last byte
	for range count {
		kind := r.byte()
		body := r.bytes(int(r.uint16()))
		if r.short {
			return nil, errors.New("truncated slot")
		}
		if kind <= last {
			return nil, fmt.Errorf("slot kind %d after %d", kind, last)
		}
		last = kind
		if len(body) < wrappedKeySize {
			return nil, fmt.Errorf("slot kind %d: body is %d bytes", kind, len(body))
		}
		meta, wrapped := body[:len(body)-wrappedKeySize], body[len(body)-wrappedKeySize:]
		switch kind {
		case passwordSlot:
			p := &passwordSlotData{wrapped: wrapped}
			if err := p.params.UnmarshalBinary(meta); err != nil {
				return nil, fmt.Errorf("password slot: %w", err)
			}
			t.password = p
		case sharesSlot:
			if len(meta) != 2+splitIDSize {
				return nil, fmt.Errorf("shares slot: body is %d bytes", len(body))
			}
			sh := &sharesSlotData{k: meta[0], n: meta[1], wrapped: wrapped}
			copy(sh.split[:], meta[2:])
			if err := (ShareSpec{K: int(sh.k), N: int(sh.n)}).validate(); err != nil {
				return nil, fmt.Errorf("shares slot: %w", err)
			}
			t.shares = sh
		default:
			return nil, fmt.Errorf("unknown slot kind %d", kind)
		}
	}
	n := r.uint32()
	if r.short || n < minKeysSize || n > maxKeysSize {
		return nil, errors.New("root keys length out of bounds")
	}
	t.keys = r.bytes(int(n))
	if r.short || len(r.b) != 0 {
		return nil, errors.New("root keys length does not match the encoding")
	}
	// Copy what is kept so s does not alias the caller's buffer.
	t.keys = append([]byte(nil), t.keys...)
	if t.password != nil {
		t.password.wrapped = append([]byte(nil), t.password.wrapped...)
	}
	if t.shares != nil {
		t.shares.wrapped = append([]byte(nil), t.shares.wrapped...)
	}
	return t, nil
}

// header encodes everything before the root keys: format, ID, epoch and
// slots. It is also the root keys' additional data, after keysLabel.
func (s *Sealed) header() ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, sealedFormat)
	b = append(b, s.id[:]...)
	b = binary.BigEndian.AppendUint64(b, s.epoch)
	var count byte
	if s.password != nil {
		count++
	}
	if s.shares != nil {
		count++
	}
	b = append(b, count)
	if s.password != nil {
		meta, err := s.password.meta()
		if err != nil {
			return nil, err
		}
		b = appendSlot(b, passwordSlot, meta, s.password.wrapped)
	}
	if s.shares != nil {
		b = appendSlot(b, sharesSlot, s.shares.meta(), s.shares.wrapped)
	}
	return b, nil
}

func appendSlot(b []byte, kind byte, meta, wrapped []byte) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(len(meta)+len(wrapped)))
	b = append(b, meta...)
	return append(b, wrapped...)
}

// meta is the password slot's parameters as encoded.
func (p *passwordSlotData) meta() ([]byte, error) { return p.params.MarshalBinary() }

// meta is the shares slot's k, n and split ID as encoded.
func (sh *sharesSlotData) meta() []byte {
	return append([]byte{sh.k, sh.n}, sh.split[:]...)
}

// slotAAD is a slot's additional data: label, keyring ID, kind and the
// slot's parameters. The label, ID and kind have fixed lengths and the
// parameters come last, so the concatenation is unambiguous.
func slotAAD(id [IDSize]byte, kind byte, meta []byte) []byte {
	aad := make([]byte, 0, len(slotLabel)+IDSize+1+len(meta))
	aad = append(aad, slotLabel...)
	aad = append(aad, id[:]...)
	aad = append(aad, kind)
	return append(aad, meta...)
}

// sharesKEK derives the shares slot's key-encryption key from the unseal
// key, bound to the keyring ID and the split.
func sharesKEK(unsealKey []byte, id [IDSize]byte, split [splitIDSize]byte) (cipher.AEAD, error) {
	info := sharesInfo + string(id[:]) + string(split[:])
	kek, err := hkdf.Key(sha256.New, unsealKey, nil, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive shares key: %w", err)
	}
	defer clear(kek)
	return newGCM(kek)
}

// wrapKey encrypts the keyring key under kek with a fresh nonce.
func wrapKey(kek cipher.AEAD, keyringKey, aad []byte) ([]byte, error) {
	nonce := make([]byte, kek.NonceSize(), kek.NonceSize()+len(keyringKey)+kek.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return kek.Seal(nonce, nonce, keyringKey, aad), nil
}

// unwrapKey decrypts a keyring key wrapped by wrapKey into key, or returns
// ErrWrongCredentials.
func unwrapKey(kek cipher.AEAD, wrapped, aad []byte, key *[KeySize]byte) error {
	n := kek.NonceSize()
	if len(wrapped) != wrappedKeySize {
		return ErrWrongCredentials
	}
	plain, err := kek.Open(nil, wrapped[:n], wrapped[n:], aad)
	if err != nil {
		return ErrWrongCredentials
	}
	copy(key[:], plain)
	clear(plain)
	return nil
}

// sealKeys encrypts ring's root keys under keyringKey into s.keys, with the
// rest of s as additional data. Everything else in s must be set.
func (s *Sealed) sealKeys(ring *Keyring, keyringKey []byte) error {
	header, err := s.header()
	if err != nil {
		return err
	}
	plain, err := ring.encodeKeys()
	if err != nil {
		return err
	}
	defer clear(plain)
	aead, err := newGCM(keyringKey)
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("read nonce: %w", err)
	}
	s.keys = aead.Seal(nonce, nonce, plain, append([]byte(keysLabel), header...))
	return nil
}

// openKeys decrypts s's root keys under keyringKey. Keys that do not
// authenticate are ErrTampered.
func (s *Sealed) openKeys(keyringKey []byte) (*Keyring, error) {
	header, err := s.header()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	aead, err := newGCM(keyringKey)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(s.keys) < n+aead.Overhead() {
		return nil, fmt.Errorf("%w: root keys too short", ErrMalformed)
	}
	plain, err := aead.Open(nil, s.keys[:n], s.keys[n:], append([]byte(keysLabel), header...))
	if err != nil {
		return nil, ErrTampered
	}
	defer clear(plain)
	ring := &Keyring{id: s.id}
	if err := ring.decodeKeys(plain); err != nil {
		return nil, fmt.Errorf("%w: decode keys: %w", ErrMalformed, err)
	}
	return ring, nil
}

// reader reads big-endian values from b; once a read runs past the end it
// sets short and returns zeros.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) bytes(n int) []byte {
	if r.short || n > len(r.b) {
		r.short = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) uint16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if v := r.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if v := r.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
