package keyring

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

// MaxShares is the largest number of shares an unseal key is split into.
const MaxShares = 16

// shareLabel starts the text form of every share and names its format.
const shareLabel = "spike-share-v1"

// Sizes in a share: the keyring ID prefix shown to operators, the split ID
// that tells shares of different splits apart, the scalar that is the
// share's value, and the checksum that catches typing errors.
const (
	idPrefixSize = 4
	splitIDSize  = 4
	scalarSize   = 32
	checksumSize = 4
	payloadSize  = splitIDSize + scalarSize + checksumSize
)

// ErrInvalidShare reports a share that does not parse, fails its checksum,
// or does not belong with the sealed keyring or the other shares given:
// another keyring, another split of the unseal key, a repeated index. The
// message names the problem and the share, never its value.
var ErrInvalidShare = errors.New("invalid share")

// ErrNotEnoughShares reports fewer distinct shares than the split's
// threshold. Keeper may collect more and try again.
var ErrNotEnoughShares = errors.New("not enough shares")

// b64 encodes share payloads; strict, so each payload has one text form.
var b64 = base64.RawURLEncoding.Strict()

// shamir is the group whose scalar field the unseal key is shared over:
// Ristretto255, whose scalar arithmetic in circl is constant time.
var shamir = group.Ristretto255

// ShareSpec asks for an unseal key split into N shares of which any K
// recover it. The zero ShareSpec asks for no shares slot.
type ShareSpec struct {
	K, N int
}

// IsZero reports whether s asks for no shares.
func (s ShareSpec) IsZero() bool { return s == ShareSpec{} }

// validate checks 1 ≤ K ≤ N ≤ MaxShares.
func (s ShareSpec) validate() error {
	if s.K < 1 || s.K > s.N || s.N > MaxShares {
		return fmt.Errorf("%w: shares %d of %d, want 1 ≤ k ≤ n ≤ %d", ErrInvalidSlots, s.K, s.N, MaxShares)
	}
	return nil
}

// Share is one of the N shares of a keyring's unseal key. Its text form,
// printed to one operator once, is
//
//	spike-share-v1:<keyring id prefix>:<index>-of-<n>:k<k>:<payload>
//
// where the keyring ID prefix is the first 4 bytes of the ID in hex and the
// payload is base64url (no padding) of the split ID (4 bytes), the share's
// value (32 bytes) and a checksum (the first 4 bytes of SHA-256 over the
// text before the payload, the split ID and the value). The checksum
// catches mistyped shares; it is not a MAC. String and GoString redact the
// value so a Share is safe to log; MarshalText gives the full form.
type Share struct {
	idPrefix [idPrefixSize]byte
	split    [splitIDSize]byte
	index    uint8
	k, n     uint8
	value    [scalarSize]byte
}

// Index returns the share's position, 1 to N.
func (s *Share) Index() int { return int(s.index) }

// Spec returns the split the share belongs to: K of N.
func (s *Share) Spec() ShareSpec { return ShareSpec{K: int(s.k), N: int(s.n)} }

// MarshalText returns the share's full text form, value included. The
// caller should clear the result once it is shown.
func (s *Share) MarshalText() ([]byte, error) {
	head := s.head()
	payload := make([]byte, 0, payloadSize)
	payload = append(payload, s.split[:]...)
	payload = append(payload, s.value[:]...)
	payload = append(payload, s.checksum(head)...)
	defer clear(payload)
	out := make([]byte, len(head), len(head)+b64.EncodedLen(payloadSize))
	copy(out, head)
	return b64.AppendEncode(out, payload), nil
}

// UnmarshalText parses the text form written by MarshalText. Surrounding
// white space is ignored; anything else out of place is ErrInvalidShare.
func (s *Share) UnmarshalText(text []byte) error {
	text = bytes.TrimSpace(text)
	fields := bytes.Split(text, []byte(":"))
	if len(fields) != 5 || string(fields[0]) != shareLabel {
		return fmt.Errorf("%w: not a %s:<keyring>:<i>-of-<n>:k<k>:<payload> share", ErrInvalidShare, shareLabel)
	}
	var t Share
	if len(fields[1]) != 2*idPrefixSize || !isLowerHex(fields[1]) {
		return fmt.Errorf("%w: keyring prefix %q is not %d lowercase hex digits", ErrInvalidShare, fields[1], 2*idPrefixSize)
	}
	_, _ = hex.Decode(t.idPrefix[:], fields[1])
	i, n, ok := strings.Cut(string(fields[2]), "-of-")
	index, err1 := parseSmall(i)
	count, err2 := parseSmall(n)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%w: %q is not <index>-of-<n>", ErrInvalidShare, fields[2])
	}
	k, ok := bytes.CutPrefix(fields[3], []byte("k"))
	threshold, err := parseSmall(string(k))
	if !ok || err != nil {
		return fmt.Errorf("%w: %q is not k<threshold>", ErrInvalidShare, fields[3])
	}
	if (ShareSpec{K: threshold, N: count}).validate() != nil || index < 1 || index > count {
		return fmt.Errorf("%w: share %d of %d with threshold %d is out of range", ErrInvalidShare, index, count, threshold)
	}
	t.index, t.n, t.k = uint8(index), uint8(count), uint8(threshold)
	if b64.DecodedLen(len(fields[4])) != payloadSize {
		return fmt.Errorf("%w: share %d: payload is not %d base64url characters", ErrInvalidShare, index, b64.EncodedLen(payloadSize))
	}
	payload := make([]byte, payloadSize)
	defer clear(payload)
	if n, err := b64.Decode(payload, fields[4]); err != nil || n != payloadSize {
		return fmt.Errorf("%w: share %d: payload is not base64url", ErrInvalidShare, index)
	}
	copy(t.split[:], payload)
	copy(t.value[:], payload[splitIDSize:])
	defer t.Drop()
	head := text[:len(text)-len(fields[4])]
	if subtle.ConstantTimeCompare(t.checksum(head), payload[splitIDSize+scalarSize:]) != 1 {
		return fmt.Errorf("%w: share %d: bad checksum (mistyped?)", ErrInvalidShare, index)
	}
	if _, err := t.scalar(); err != nil {
		return fmt.Errorf("%w: share %d: value is not a scalar", ErrInvalidShare, index)
	}
	*s = t
	return nil
}

// ParseShare parses a share's text form; see Share.UnmarshalText.
func ParseShare(text []byte) (Share, error) {
	var s Share
	err := s.UnmarshalText(text)
	return s, err
}

// String returns the share's text form with the payload redacted.
func (s *Share) String() string { return string(s.head()) + "…" }

// GoString is String, so %#v does not print the value either.
func (s *Share) GoString() string { return s.String() }

// Drop zeroes the share's value.
func (s *Share) Drop() { clear(s.value[:]) }

// head is the text form up to and including the colon before the payload.
func (s *Share) head() []byte {
	return fmt.Appendf(nil, "%s:%x:%d-of-%d:k%d:", shareLabel, s.idPrefix, s.index, s.n, s.k)
}

// checksum is the first checksumSize bytes of SHA-256 over head, the split
// ID and the value.
func (s *Share) checksum(head []byte) []byte {
	h := sha256.New()
	h.Write(head)
	h.Write(s.split[:])
	h.Write(s.value[:])
	return h.Sum(nil)[:checksumSize]
}

// scalar returns the share's value as a scalar.
func (s *Share) scalar() (group.Scalar, error) {
	v := shamir.NewScalar()
	if err := v.UnmarshalBinary(s.value[:]); err != nil {
		return nil, err
	}
	return v, nil
}

// parseSmall parses a decimal number of one or two digits without a
// leading zero, so every share has exactly one text form.
func parseSmall(s string) (int, error) {
	if len(s) == 0 || len(s) > 2 || (len(s) > 1 && s[0] == '0') {
		return 0, strconv.ErrSyntax
	}
	return strconv.Atoi(s)
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newUnsealKey returns a random unseal key split into spec.N shares for the
// keyring id, with a fresh split ID. The caller zeroes the key and drops
// the shares.
func newUnsealKey(id [IDSize]byte, spec ShareSpec) (key []byte, split [splitIDSize]byte, shares []Share, err error) {
	if _, err := rand.Read(split[:]); err != nil {
		return nil, split, nil, fmt.Errorf("read split id: %w", err)
	}
	secret := shamir.RandomScalar(rand.Reader)
	defer secret.SetUint64(0)
	key, err = secret.MarshalBinary()
	if err != nil {
		return nil, split, nil, fmt.Errorf("encode unseal key: %w", err)
	}
	parts := secretsharing.New(rand.Reader, uint(spec.K-1), secret).Share(uint(spec.N))
	shares = make([]Share, len(parts))
	for i, p := range parts {
		v, err := p.Value.MarshalBinary()
		p.Value.SetUint64(0)
		if err == nil && len(v) != scalarSize {
			err = fmt.Errorf("%d bytes, want %d", len(v), scalarSize)
		}
		if err != nil {
			clear(key)
			dropShares(shares)
			return nil, split, nil, fmt.Errorf("encode share %d: %w", i+1, err)
		}
		shares[i] = Share{split: split, index: uint8(i + 1), k: uint8(spec.K), n: uint8(spec.N)}
		copy(shares[i].idPrefix[:], id[:])
		copy(shares[i].value[:], v)
		clear(v)
	}
	return key, split, shares, nil
}

// recoverUnsealKey recovers the unseal key from shares as a k-of-n split.
// It checks only that the shares are distinct and at least k; whether
// they belong together is the caller's business. A set of shares that is
// not k shares of one split recovers a wrong key, which no slot accepts.
func recoverUnsealKey(shares []Share, k int) ([]byte, error) {
	parts := make([]secretsharing.Share, 0, len(shares))
	defer func() {
		for _, p := range parts {
			p.Value.SetUint64(0)
		}
	}()
	seen := make(map[uint8]bool, len(shares))
	for i := range shares {
		if seen[shares[i].index] {
			return nil, fmt.Errorf("%w: share %d given twice", ErrInvalidShare, shares[i].index)
		}
		seen[shares[i].index] = true
		v, err := shares[i].scalar()
		if err != nil {
			return nil, fmt.Errorf("%w: share %d: value is not a scalar", ErrInvalidShare, shares[i].index)
		}
		parts = append(parts, secretsharing.Share{ID: shamir.NewScalar().SetUint64(uint64(shares[i].index)), Value: v})
	}
	if k < 1 || len(parts) < k {
		return nil, fmt.Errorf("%w: have %d of the %d needed", ErrNotEnoughShares, len(parts), k)
	}
	secret, err := secretsharing.Recover(uint(k-1), parts)
	if err != nil {
		return nil, fmt.Errorf("recover unseal key: %w", err)
	}
	defer secret.SetUint64(0)
	return secret.MarshalBinary()
}

// dropShares zeroes every share's value.
func dropShares(shares []Share) {
	for i := range shares {
		shares[i].Drop()
	}
}
