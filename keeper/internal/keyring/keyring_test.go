package keyring

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testParams are cheap Argon2id parameters so tests run fast.
func testParams(t *testing.T) Params {
	t.Helper()
	p, err := NewParams(1, 1024, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	return p
}

func newKeyring(t *testing.T) *Keyring {
	t.Helper()
	k, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(k.Drop)
	return k
}

// addVersion appends a random root key version, as a rotation would.
func addVersion(t *testing.T, k *Keyring) {
	t.Helper()
	k2 := newKeyring(t)
	rk := k2.keys[0]
	rk.version = k.ActiveVersion() + 1
	k.keys = append(k.keys, rk)
}

func TestNew(t *testing.T) {
	t.Parallel()
	a, b := newKeyring(t), newKeyring(t)
	if len(a.ID()) != IDSize {
		t.Errorf("ID is %d bytes, want %d", len(a.ID()), IDSize)
	}
	if bytes.Equal(a.ID(), b.ID()) {
		t.Error("two keyrings share an ID")
	}
	if a.ActiveVersion() != 1 {
		t.Errorf("ActiveVersion = %d, want 1", a.ActiveVersion())
	}
	if a.Equal(b) {
		t.Error("two new keyrings are Equal")
	}
	if !a.Equal(a) { //nolint:gocritic // a keyring must be Equal to itself
		t.Error("keyring not Equal to itself")
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, versions := range []int{1, 3} {
		k := newKeyring(t)
		for range versions - 1 {
			addVersion(t, k)
		}
		password := []byte("correct horse battery staple")
		params, ciphertext, err := Seal(k, password, testParams(t))
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		got, err := Open(k.ID(), params, ciphertext, password)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !got.Equal(k) {
			t.Errorf("opened keyring (%d versions) differs from the sealed one", versions)
		}
		if diff := cmp.Diff(k.ActiveVersion(), got.ActiveVersion()); diff != "" {
			t.Errorf("ActiveVersion (-want +got):\n%s", diff)
		}
	}
}

func TestOpenWrongPassword(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	params, ciphertext, err := Seal(k, []byte("password-one"), testParams(t))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	for _, pw := range []string{"password-two", "", "password-on", "password-one "} {
		if _, err := Open(k.ID(), params, ciphertext, []byte(pw)); !errors.Is(err, ErrWrongPassword) {
			t.Errorf("Open(%q) = %v, want ErrWrongPassword", pw, err)
		}
	}
}

func TestOpenAlteredByte(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	password := []byte("password-one")
	params, ciphertext, err := Seal(k, password, testParams(t))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	fields := []struct {
		name string
		b    []byte
	}{
		{"id", k.ID()},
		{"params", params},
		{"ciphertext", ciphertext},
	}
	for f := range fields {
		for i := range fields[f].b {
			for _, mask := range []byte{0x01, 0x80} {
				parts := [3][]byte{k.ID(), bytes.Clone(params), bytes.Clone(ciphertext)}
				parts[f][i] ^= mask
				// Parameters altered out of their limits no longer decode;
				// every other change fails authentication.
				want := ErrWrongPassword
				if fields[f].name == "params" && new(Params).UnmarshalBinary(parts[1]) != nil {
					want = ErrMalformed
				}
				if _, err := Open(parts[0], parts[1], parts[2], password); !errors.Is(err, want) {
					t.Errorf("%s byte %d ^ %#x: Open = %v, want %v", fields[f].name, i, mask, err, want)
				}
			}
		}
	}
}

func TestOpenTruncated(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	password := []byte("password-one")
	params, ciphertext, err := Seal(k, password, testParams(t))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	tests := []struct {
		name                   string
		id, params, ciphertext []byte
		want                   error
	}{
		{"id short", k.ID()[1:], params, ciphertext, ErrMalformed},
		{"id empty", nil, params, ciphertext, ErrMalformed},
		{"params empty", k.ID(), nil, ciphertext, ErrMalformed},
		{"params short", k.ID(), params[:len(params)-1], ciphertext, ErrMalformed},
		{"ciphertext empty", k.ID(), params, nil, ErrMalformed},
		{"nonce only", k.ID(), params, ciphertext[:12], ErrMalformed},
		{"nonce and tag, no keys", k.ID(), params, ciphertext[:12+16], ErrWrongPassword},
		{"ciphertext short", k.ID(), params, ciphertext[:len(ciphertext)-1], ErrWrongPassword},
		{"ciphertext long", k.ID(), params, append(bytes.Clone(ciphertext), 0), ErrWrongPassword},
	}
	for _, tt := range tests {
		if _, err := Open(tt.id, tt.params, tt.ciphertext, password); !errors.Is(err, tt.want) {
			t.Errorf("%s: Open = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestOpenUndecodableKeys checks that keys which authenticate but do not
// decode are reported as malformed, not as a wrong password.
func TestOpenUndecodableKeys(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	addVersion(t, k)
	k.keys[0], k.keys[1] = k.keys[1], k.keys[0] // versions descending
	password := []byte("password-one")
	params, ciphertext, err := Seal(k, password, testParams(t))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, err := Open(k.ID(), params, ciphertext, password); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open = %v, want ErrMalformed", err)
	}
}

func TestSealFreshCiphertext(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	p := testParams(t)
	_, a, err := Seal(k, []byte("password-one"), p)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	_, b, err := Seal(k, []byte("password-one"), p)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Equal(a, b) {
		t.Error("two seals produced the same ciphertext")
	}
}

func TestDrop(t *testing.T) {
	t.Parallel()
	k, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	keys := k.keys
	k.Drop()
	for _, rk := range keys {
		if rk.key != [KeySize]byte{} {
			t.Errorf("root key version %d not zeroed", rk.version)
		}
	}
	if k.ActiveVersion() != 0 {
		t.Errorf("ActiveVersion after Drop = %d, want 0", k.ActiveVersion())
	}
	if _, _, err := Seal(k, []byte("password-one"), testParams(t)); err == nil {
		t.Error("Seal after Drop succeeded")
	}
	if _, _, _, err := k.WrapDataKey(make([]byte, DEKIDSize)); err == nil {
		t.Error("WrapDataKey after Drop succeeded")
	}
}

func TestDecodeKeysRejected(t *testing.T) {
	t.Parallel()
	entry := func(version uint32) []byte {
		b := []byte{byte(version >> 24), byte(version >> 16), byte(version >> 8), byte(version)}
		return append(b, make([]byte, KeySize)...)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown format", join([]byte{2, 0, 0, 0, 1}, entry(1))},
		{"zero keys", []byte{1, 0, 0, 0, 0}},
		{"count too large", join([]byte{1, 0, 0, 0, 2}, entry(1))},
		{"trailing bytes", join([]byte{1, 0, 0, 0, 1}, entry(1), []byte{0})},
		{"version zero", join([]byte{1, 0, 0, 0, 1}, entry(0))},
		{"versions descending", join([]byte{1, 0, 0, 0, 2}, entry(2), entry(1))},
		{"versions repeated", join([]byte{1, 0, 0, 0, 2}, entry(1), entry(1))},
	}
	for _, tt := range tests {
		var k Keyring
		if err := k.decodeKeys(tt.b); err == nil {
			t.Errorf("%s: decodeKeys succeeded", tt.name)
		}
	}
}
