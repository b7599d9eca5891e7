package keyring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestSealedAlteredByte flips bits in every byte of an encoded sealed
// keyring with both slots and opens it with the password and with the
// shares. Structure that no longer decodes is ErrMalformed; otherwise each
// part fails as documented on Sealed and the Open functions.
func TestSealedAlteredByte(t *testing.T) {
	t.Parallel()
	password := []byte("password-one")
	u, shares := create(t, password, ShareSpec{K: 2, N: 3})
	enc, err := u.Sealed().MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	paramsLen := len(mustMeta(t, u.Sealed().password))
	type part struct {
		name       string
		size       int
		structural bool  // every change must fail to decode
		password   error // otherwise: opening with the password fails so
		shares     error // and opening with the shares so
	}
	parts := []part{
		{"format", 1, true, nil, nil},
		{"id prefix", idPrefixSize, false, ErrWrongCredentials, ErrInvalidShare},
		{"id rest", IDSize - idPrefixSize, false, ErrWrongCredentials, ErrWrongCredentials},
		{"epoch", 8, false, ErrTampered, ErrTampered},
		{"slot count", 1, true, nil, nil},
		{"password kind", 1, true, nil, nil},
		{"password length", 2, true, nil, nil},
		{"password params", paramsLen, false, ErrWrongCredentials, ErrTampered},
		{"password wrapped", wrappedKeySize, false, ErrWrongCredentials, ErrTampered},
		{"shares kind", 1, true, nil, nil},
		{"shares length", 2, true, nil, nil},
		{"shares k and n", 2, false, ErrTampered, ErrInvalidShare},
		{"shares split", splitIDSize, false, ErrTampered, ErrInvalidShare},
		{"shares wrapped", wrappedKeySize, false, ErrTampered, ErrWrongCredentials},
		{"keys length", 4, true, nil, nil},
		{"keys", len(u.Sealed().keys), false, ErrTampered, ErrTampered},
	}
	off := 0
	for _, p := range parts {
		for i := off; i < off+p.size; i++ {
			for _, mask := range []byte{0x01, 0x80} {
				b := bytes.Clone(enc)
				b[i] ^= mask
				var s Sealed
				if err := s.UnmarshalBinary(b); err != nil {
					if !errors.Is(err, ErrMalformed) {
						t.Errorf("%s byte %d ^ %#x: UnmarshalBinary = %v, want ErrMalformed", p.name, i-off, mask, err)
					}
					continue
				}
				if p.structural {
					t.Errorf("%s byte %d ^ %#x: still decodes", p.name, i-off, mask)
					continue
				}
				if _, err := OpenWithPassword(&s, password); !errors.Is(err, p.password) {
					t.Errorf("%s byte %d ^ %#x: OpenWithPassword = %v, want %v", p.name, i-off, mask, err, p.password)
				}
				if _, err := OpenWithShares(&s, shares[:2]); !errors.Is(err, p.shares) {
					t.Errorf("%s byte %d ^ %#x: OpenWithShares = %v, want %v", p.name, i-off, mask, err, p.shares)
				}
			}
		}
		off += p.size
	}
	if off != len(enc) {
		t.Fatalf("parts cover %d bytes of %d", off, len(enc))
	}
}

func mustMeta(t *testing.T, p *passwordSlotData) []byte {
	t.Helper()
	b, err := p.meta()
	if err != nil {
		t.Fatalf("meta: %v", err)
	}
	return b
}

// TestSealedMixed puts together parts of different sealed keyrings, as a
// database writer could, and checks that none of them opens.
func TestSealedMixed(t *testing.T) {
	t.Parallel()
	password := []byte("the same password")
	spec := ShareSpec{K: 2, N: 3}
	a, aShares := create(t, password, spec)
	b, _ := create(t, password, spec)
	a2, err := a.Rotate()
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Cleanup(a2.Drop)
	stronger, err := NewParams(2, 16, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	a3, _, err := a2.Rekey(password, stronger, ShareSpec{})
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	t.Cleanup(a3.Drop)
	weaker, err := NewParams(1, 8, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	weaker.Salt = a3.Sealed().password.params.Salt

	// with returns a copy of base changed by edit.
	with := func(base *Sealed, edit func(*Sealed)) *Sealed {
		s := *base
		edit(&s)
		return roundTrip(t, &s)
	}
	byPassword := func(s *Sealed) error { _, err := OpenWithPassword(s, password); return err }
	byShares := func(s *Sealed) error { _, err := OpenWithShares(s, aShares[:2]); return err }
	tests := []struct {
		name string
		s    *Sealed
		open func(*Sealed) error
		want error
	}{
		{"b's password slot in a", with(a.Sealed(), func(s *Sealed) { s.password = b.Sealed().password }), byPassword, ErrWrongCredentials},
		{"a's password slot in b", with(b.Sealed(), func(s *Sealed) { s.password = a.Sealed().password }), byPassword, ErrWrongCredentials},
		{"a's slots and id on b's keys", with(b.Sealed(), func(s *Sealed) { s.id, s.password, s.shares = a.Sealed().id, a.Sealed().password, a.Sealed().shares }), byPassword, ErrTampered},
		{"a's shares slot in b, b's id", with(b.Sealed(), func(s *Sealed) { s.shares = a.Sealed().shares }), func(s *Sealed) error {
			fixed := append([]Share(nil), aShares[:2]...)
			for i := range fixed {
				fixed[i].idPrefix = [idPrefixSize]byte(s.id[:idPrefixSize])
			}
			_, err := OpenWithShares(s, fixed)
			return err
		}, ErrWrongCredentials},
		{"epoch 2 rolled back to 1", with(a2.Sealed(), func(s *Sealed) { s.epoch = 1 }), byPassword, ErrTampered},
		{"epoch 2 pushed to 3", with(a2.Sealed(), func(s *Sealed) { s.epoch = 3 }), byShares, ErrTampered},
		{"epoch 1 keys under the epoch 2 header", with(a2.Sealed(), func(s *Sealed) { s.keys = a.Sealed().keys }), byPassword, ErrTampered},
		{"epoch 2 keys under the epoch 1 header", with(a.Sealed(), func(s *Sealed) { s.keys = a2.Sealed().keys }), byShares, ErrTampered},
		{"shares slot dropped", with(a2.Sealed(), func(s *Sealed) { s.shares = nil }), byPassword, ErrTampered},
		{"password slot dropped", with(a2.Sealed(), func(s *Sealed) { s.password = nil }), byShares, ErrTampered},
		{"slots of epoch 2 with keys of epoch 3", with(a3.Sealed(), func(s *Sealed) { s.password, s.shares = a2.Sealed().password, a2.Sealed().shares }), byShares, ErrTampered},
		{"weaker params of epoch 2 slot in epoch 3", with(a3.Sealed(), func(s *Sealed) { s.password = a2.Sealed().password }), byPassword, ErrTampered},
		{"params weakened in place", with(a3.Sealed(), func(s *Sealed) {
			p := *s.password
			p.params = weaker
			s.password = &p
		}), byPassword, ErrWrongCredentials},
	}
	for _, tt := range tests {
		if err := tt.open(tt.s); !errors.Is(err, tt.want) {
			t.Errorf("%s: open = %v, want %v", tt.name, err, tt.want)
		}
	}

	// What cannot be detected: an intact older sealed keyring opens, and
	// only its epoch tells it is old.
	old, err := OpenWithPassword(roundTrip(t, a2.Sealed()), password)
	if err != nil {
		t.Fatalf("replayed epoch 2: %v", err)
	}
	if old.Epoch() != 2 || a3.Epoch() != 3 {
		t.Errorf("replayed epoch %d, current %d", old.Epoch(), a3.Epoch())
	}
}

func TestSealedUnmarshalRejected(t *testing.T) {
	t.Parallel()
	u, _ := create(t, []byte("password-one"), ShareSpec{K: 2, N: 3})
	enc, err := u.Sealed().MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	pwEnd := 1 + IDSize + 8 + 1 + 3 + len(mustMeta(t, u.Sealed().password)) + wrappedKeySize
	sharesEnd := pwEnd + 3 + 2 + splitIDSize + wrappedKeySize
	set := func(i int, v ...byte) []byte {
		b := bytes.Clone(enc)
		copy(b[i:], v)
		return b
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	keysLen := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"format 1", set(0, 1)},
		{"format 3", set(0, 3)},
		{"header only", enc[:1+IDSize+8]},
		{"epoch 0", set(1+IDSize, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"no slots", join(enc[:1+IDSize+8], []byte{0}, enc[sharesEnd:])},
		{"three slots", set(1+IDSize+8, 3)},
		{"slots swapped", join(enc[:1+IDSize+8+1], enc[pwEnd:sharesEnd], enc[1+IDSize+8+1:pwEnd], enc[sharesEnd:])},
		{"password slot twice", join(enc[:1+IDSize+8+1], enc[1+IDSize+8+1:pwEnd], enc[1+IDSize+8+1:pwEnd], enc[sharesEnd:])},
		{"unknown kind", set(pwEnd, 3)},
		{"k above n", set(pwEnd+3, 4, 3)},
		{"n above max", set(pwEnd+3, 2, MaxShares+1)},
		{"keys too short", join(enc[:sharesEnd], keysLen(minKeysSize-1), make([]byte, minKeysSize-1))},
		{"keys too long", join(enc[:sharesEnd], keysLen(maxKeysSize+1), make([]byte, maxKeysSize+1))},
		{"keys truncated", enc[:len(enc)-1]},
		{"trailing byte", append(bytes.Clone(enc), 0)},
	}
	for _, tt := range tests {
		var s Sealed
		if err := s.UnmarshalBinary(tt.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrMalformed", tt.name, err)
		}
		if s.epoch != 0 || s.keys != nil || s.password != nil {
			t.Errorf("%s: UnmarshalBinary changed its receiver on error", tt.name)
		}
	}
}

// FuzzSealedUnmarshal checks that any input either fails to decode with
// ErrMalformed or decodes to a value that encodes back to the same bytes.
func FuzzSealedUnmarshal(f *testing.F) {
	for _, spec := range []ShareSpec{{}, {1, 1}, {3, 5}} {
		password := []byte("pw")
		if spec != (ShareSpec{}) {
			password = nil
		}
		u, _, err := Create(password, Params{Time: 1, MemoryKiB: 8, Threads: 1, Salt: make([]byte, SaltSize)}, spec)
		if err != nil {
			f.Fatalf("Create: %v", err)
		}
		b, err := u.Sealed().MarshalBinary()
		if err != nil {
			f.Fatalf("MarshalBinary: %v", err)
		}
		f.Add(b)
		u.Drop()
	}
	f.Add([]byte{sealedFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Sealed
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnmarshalBinary = %v, want ErrMalformed", err)
			}
			return
		}
		got, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded keyring: %v", err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("decoded keyring encodes to other bytes:\n got %x\nwant %x", got, b)
		}
	})
}
