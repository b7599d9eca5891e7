package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func dekID(b byte) []byte { return bytes.Repeat([]byte{b}, DEKIDSize) }

func TestDataKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	plaintext, wrapped, version, err := k.WrapDataKey(dekID(1))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	if len(plaintext) != KeySize {
		t.Errorf("data key is %d bytes, want %d", len(plaintext), KeySize)
	}
	if version != 1 {
		t.Errorf("root key version = %d, want 1", version)
	}
	if bytes.Contains(wrapped, plaintext) {
		t.Error("wrapped data key contains the plaintext")
	}
	got, err := k.UnwrapDataKey(dekID(1), wrapped, version)
	if err != nil {
		t.Fatalf("UnwrapDataKey: %v", err)
	}
	if diff := cmp.Diff(plaintext, got); diff != "" {
		t.Errorf("data key (-want +got):\n%s", diff)
	}
}

func TestDataKeyOldVersion(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	old, wrapped, v1, err := k.WrapDataKey(dekID(1))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	addVersion(t, k)
	_, _, v2, err := k.WrapDataKey(dekID(2))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	if v1 != 1 || v2 != 2 {
		t.Errorf("versions = %d, %d, want 1, 2", v1, v2)
	}
	got, err := k.UnwrapDataKey(dekID(1), wrapped, v1)
	if err != nil {
		t.Fatalf("UnwrapDataKey after adding a version: %v", err)
	}
	if diff := cmp.Diff(old, got); diff != "" {
		t.Errorf("data key (-want +got):\n%s", diff)
	}
}

func TestDataKeyUnwrapRejected(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	addVersion(t, k)
	_, wrapped, version, err := k.WrapDataKey(dekID(1))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	other := newKeyring(t)
	// A keyring with the same root keys but another ID must not unwrap:
	// the ID is bound in the additional data.
	sameKeys := &Keyring{keys: k.keys}
	sameKeys.id[0] = k.id[0] ^ 1
	type unwrapCase struct {
		name    string
		k       *Keyring
		dekID   []byte
		wrapped []byte
		version uint32
	}
	tests := []unwrapCase{
		{"other dek id", k, dekID(2), wrapped, version},
		{"older version", k, dekID(1), wrapped, version - 1},
		{"unknown version", k, dekID(1), wrapped, version + 1},
		{"version zero", k, dekID(1), wrapped, 0},
		{"other keyring", other, dekID(1), wrapped, 1},
		{"same keys other id", sameKeys, dekID(1), wrapped, version},
		{"truncated", k, dekID(1), wrapped[:len(wrapped)-1], version},
		{"extended", k, dekID(1), append(bytes.Clone(wrapped), 0), version},
		{"empty", k, dekID(1), nil, version},
	}
	for i := range wrapped {
		w := bytes.Clone(wrapped)
		w[i] ^= 0x01
		tests = append(tests, unwrapCase{fmt.Sprintf("flipped byte %d", i), k, dekID(1), w, version})
	}
	for _, tt := range tests {
		if _, err := tt.k.UnwrapDataKey(tt.dekID, tt.wrapped, tt.version); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: UnwrapDataKey = %v, want ErrUnwrap", tt.name, err)
		}
	}
}

func TestDataKeyIDLength(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	for _, id := range [][]byte{nil, make([]byte, DEKIDSize-1), make([]byte, DEKIDSize+1)} {
		if _, _, _, err := k.WrapDataKey(id); !errors.Is(err, ErrInvalidDEKID) {
			t.Errorf("WrapDataKey(%d bytes) = %v, want ErrInvalidDEKID", len(id), err)
		}
		if _, err := k.UnwrapDataKey(id, make([]byte, 60), 1); !errors.Is(err, ErrInvalidDEKID) {
			t.Errorf("UnwrapDataKey(%d bytes) = %v, want ErrInvalidDEKID", len(id), err)
		}
	}
}

func TestRewrapDataKey(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	want, wrapped, v1, err := k.WrapDataKey(dekID(1))
	if err != nil {
		t.Fatalf("WrapDataKey: %v", err)
	}
	addVersion(t, k)
	rewrapped, v2, err := k.RewrapDataKey(dekID(1), wrapped, v1)
	if err != nil {
		t.Fatalf("RewrapDataKey: %v", err)
	}
	if v2 != k.ActiveVersion() || v2 == v1 {
		t.Errorf("rewrapped under version %d, want the active %d", v2, k.ActiveVersion())
	}
	got, err := k.UnwrapDataKey(dekID(1), rewrapped, v2)
	if err != nil {
		t.Fatalf("UnwrapDataKey of the rewrapped key: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("data key (-want +got):\n%s", diff)
	}
	if _, err := k.UnwrapDataKey(dekID(2), rewrapped, v2); !errors.Is(err, ErrUnwrap) {
		t.Errorf("rewrapped key unwraps for another dek id: %v", err)
	}
	tests := []struct {
		name    string
		dekID   []byte
		wrapped []byte
		version uint32
		want    error
	}{
		{"other dek id", dekID(2), wrapped, v1, ErrUnwrap},
		{"wrong version", dekID(1), wrapped, v2, ErrUnwrap},
		{"unknown version", dekID(1), wrapped, v2 + 1, ErrUnwrap},
		{"truncated", dekID(1), wrapped[1:], v1, ErrUnwrap},
		{"short dek id", dekID(1)[1:], wrapped, v1, ErrInvalidDEKID},
	}
	for _, tt := range tests {
		if _, _, err := k.RewrapDataKey(tt.dekID, tt.wrapped, tt.version); !errors.Is(err, tt.want) {
			t.Errorf("%s: RewrapDataKey = %v, want %v", tt.name, err, tt.want)
		}
	}
}
