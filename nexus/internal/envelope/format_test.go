package envelope

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"
)

func testKey(t *testing.T) cipher.AEAD {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	aead, err := NewAEAD(k)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	id := DEKID{1, 2, 3}
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("secret\n=\"é"), 1000)} {
		aad := SecretAAD("apps/demo/db", 7)
		sealed, err := Seal(key, id, plain, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) > 4 && bytes.Contains(sealed, plain) {
			t.Fatal("sealed value contains the plaintext")
		}
		gotID, err := KeyID(sealed)
		if err != nil || gotID != id {
			t.Fatalf("KeyID = %x, %v; want %x", gotID, err, id)
		}
		got, err := Open(key, sealed, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, want %q", got, plain)
		}
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	a, _ := Seal(key, DEKID{}, []byte("same"), nil)
	b, _ := Seal(key, DEKID{}, []byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical")
	}
}

func TestFlippingAnyByteFailsToOpen(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	aad := SecretAAD("apps/x", 1)
	sealed, err := Seal(key, DEKID{9}, []byte("s3cr3t value"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x80} {
			tampered := bytes.Clone(sealed)
			tampered[i] ^= mask
			if _, err := Open(key, tampered, aad); !errors.Is(err, ErrOpen) {
				t.Fatalf("byte %d ^ %#x: Open error = %v, want ErrOpen", i, mask, err)
			}
		}
	}
	if _, err := Open(key, sealed[:len(sealed)-1], aad); !errors.Is(err, ErrOpen) {
		t.Fatalf("truncated: Open error = %v, want ErrOpen", err)
	}
	if _, err := Open(key, sealed[:headerSize], aad); !errors.Is(err, ErrOpen) {
		t.Fatalf("header only: Open error = %v, want ErrOpen", err)
	}
}

func TestOtherRowIdentityFailsToOpen(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	sealed, err := Seal(key, DEKID{}, []byte("v"), SecretAAD("apps/x", 1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		aad  []byte
	}{
		{"other path", SecretAAD("apps/y", 1)},
		{"other version", SecretAAD("apps/x", 2)},
		{"path prefix", SecretAAD("apps/", 1)},
		{"no aad", nil},
	}
	for _, tt := range tests {
		if _, err := Open(key, sealed, tt.aad); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open error = %v, want ErrOpen", tt.name, err)
		}
	}
	if _, err := Open(testKey(t), sealed, SecretAAD("apps/x", 1)); !errors.Is(err, ErrOpen) {
		t.Errorf("other key: Open error = %v, want ErrOpen", err)
	}
}

func TestSecretAADIsUnambiguous(t *testing.T) {
	t.Parallel()
	// Without a length prefix "a/b"+version could collide with another
	// path whose bytes run into the version field.
	a := SecretAAD("a", 0x2f62)
	b := SecretAAD("a/b", 0)
	if bytes.Equal(a, b) {
		t.Fatal("distinct identities encode the same")
	}
}
