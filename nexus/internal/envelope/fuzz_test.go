package envelope

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"
)

// A value sealed once by Seal under fuzzKey, kept as a constant so every
// fuzz run (and every saved failing input) sees the same original.
var (
	fuzzSealedHex = "01feed0102030405060708090a0b0c0d0ee7c1057cfae32acf7efbafd541256027b28182" +
		"b9790fbf51949e05d9eafd215ac1616af3ab6fe7a559a1d881e9c78687f480"
	fuzzID    = DEKID{0xfe, 0xed, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	fuzzPlain = []byte("db-password=\"s3cr\u00e9t\"\n")
	fuzzAAD   = SecretAAD("apps/fuzz/db", 3)
)

// fuzzKey returns AES-256-GCM under the fixed key 0x00, 0x01, ..., 0x1f.
func fuzzKey(tb testing.TB) cipher.AEAD {
	tb.Helper()
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i)
	}
	aead, err := NewAEAD(k)
	if err != nil {
		tb.Fatal(err)
	}
	return aead
}

// fuzzSealed returns the constant sealed value.
func fuzzSealed(tb testing.TB) []byte {
	tb.Helper()
	b, err := hex.DecodeString(fuzzSealedHex)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzOpen feeds arbitrary bytes and additional data to KeyID and Open. Only
// the original sealed value with its original additional data may open; every
// other input must fail with ErrOpen, never panic or return other plaintext.
func FuzzOpen(f *testing.F) {
	key := fuzzKey(f)
	original := fuzzSealed(f)
	if got, err := Open(key, original, fuzzAAD); err != nil || !bytes.Equal(got, fuzzPlain) {
		f.Fatalf("constant sealed value: Open = %q, %v; want %q", got, err, fuzzPlain)
	}

	f.Add(original, fuzzAAD)
	for _, n := range []int{0, 1, headerSize, headerSize + tagSize - 1, headerSize + tagSize, len(original) - 1} {
		f.Add(original[:n], fuzzAAD)
	}
	f.Add(append(bytes.Clone(original), 0), fuzzAAD)
	f.Add(original, []byte(nil))
	f.Add(original, fuzzAAD[:len(fuzzAAD)-1])
	f.Add(original, SecretAAD("apps/fuzz/db", 4))
	f.Add(original, SecretAAD("apps/fuzz/dc", 3))
	for _, i := range []int{0, 1, headerSize - 1, headerSize, len(original) - 1} {
		b := bytes.Clone(original)
		b[i] ^= 1
		f.Add(b, fuzzAAD)
	}

	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		input := bytes.Clone(sealed)

		id, err := KeyID(sealed)
		malformed := len(sealed) < headerSize+tagSize || (sealed[0] != formatV1 && sealed[0] != FormatVersionKey)
		switch {
		case malformed && err == nil:
			t.Fatalf("KeyID(%x) succeeded on a malformed value", sealed)
		case malformed && !errors.Is(err, ErrOpen):
			t.Fatalf("KeyID(%x) = %v, want ErrOpen", sealed, err)
		case !malformed && err != nil:
			t.Fatalf("KeyID(%x) = %v, want success", sealed, err)
		case !malformed && !bytes.Equal(id[:], sealed[1:1+DEKIDSize]):
			t.Fatalf("KeyID(%x) = %x, want bytes 1..16", sealed, id)
		}

		plain, err := Open(key, sealed, aad)
		if bytes.Equal(sealed, original) && bytes.Equal(aad, fuzzAAD) {
			if err != nil || !bytes.Equal(plain, fuzzPlain) {
				t.Fatalf("Open(original) = %q, %v; want %q", plain, err, fuzzPlain)
			}
		} else if !errors.Is(err, ErrOpen) || plain != nil {
			t.Fatalf("Open(%x, aad %x) = %q, %v; want nil, ErrOpen", sealed, aad, plain, err)
		}
		if !bytes.Equal(sealed, input) {
			t.Fatalf("Open modified its input: %x, was %x", sealed, input)
		}
	})
}

// FuzzSealOpen checks that any plaintext and additional data round-trip
// through Seal and Open, and that flipping any one byte of the sealed value
// (or changing the additional data) makes Open fail with ErrOpen.
func FuzzSealOpen(f *testing.F) {
	key := fuzzKey(f)
	f.Add([]byte(nil), []byte(nil), uint(0), byte(1))
	f.Add(fuzzPlain, fuzzAAD, uint(headerSize), byte(0x80))
	f.Add([]byte("x"), []byte("aad"), uint(1), byte(0xff))
	f.Add(bytes.Repeat([]byte("secret\n=\"\u00e9"), 100), SecretAAD("a", 1), uint(1<<20), byte(0x10))

	f.Fuzz(func(t *testing.T, plain, aad []byte, pos uint, mask byte) {
		sealed, err := Seal(key, fuzzID, plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		if want := headerSize + len(plain) + tagSize; len(sealed) != want {
			t.Fatalf("len(sealed) = %d, want %d", len(sealed), want)
		}
		if id, err := KeyID(sealed); err != nil || id != fuzzID {
			t.Fatalf("KeyID = %x, %v; want %x", id, err, fuzzID)
		}
		got, err := Open(key, sealed, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, %v; want %q", got, err, plain)
		}
		if _, err := Open(key, sealed, append(bytes.Clone(aad), 0)); !errors.Is(err, ErrOpen) {
			t.Fatalf("Open with longer aad: err = %v, want ErrOpen", err)
		}

		if mask == 0 {
			mask = 1
		}
		i := int(pos % uint(len(sealed)))
		sealed[i] ^= mask
		if got, err := Open(key, sealed, aad); !errors.Is(err, ErrOpen) || got != nil {
			t.Fatalf("Open after flipping byte %d with %#x = %q, %v; want nil, ErrOpen", i, mask, got, err)
		}
	})
}
