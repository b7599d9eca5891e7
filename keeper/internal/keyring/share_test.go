package keyring

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// shareTexts returns the text form of each share.
func shareTexts(t *testing.T, shares []Share) []string {
	t.Helper()
	out := make([]string, len(shares))
	for i := range shares {
		b, err := shares[i].MarshalText()
		if err != nil {
			t.Fatalf("MarshalText: %v", err)
		}
		out[i] = string(b)
	}
	return out
}

func TestShareTextRoundTrip(t *testing.T) {
	t.Parallel()
	u, shares := create(t, nil, ShareSpec{K: 2, N: 3})
	for i, text := range shareTexts(t, shares) {
		prefix := fmt.Sprintf("spike-share-v1:%x:%d-of-3:k2:", u.Keyring().ID()[:4], i+1)
		if !strings.HasPrefix(text, prefix) {
			t.Errorf("share %d = %q, want prefix %q", i+1, text, prefix)
		}
		got, err := ParseShare([]byte(" " + text + "\n"))
		if err != nil {
			t.Fatalf("ParseShare(%q): %v", text, err)
		}
		if got != shares[i] {
			t.Errorf("share %d does not round-trip", i+1)
		}
		if got.Index() != i+1 || got.Spec() != (ShareSpec{K: 2, N: 3}) {
			t.Errorf("share %d: Index %d, Spec %+v", i+1, got.Index(), got.Spec())
		}
		redacted := fmt.Sprintf("%v %s %#v", &got, &got, &got)
		if strings.Contains(redacted, text[len(prefix):]) {
			t.Errorf("formatting a share prints its payload: %s", redacted)
		}
	}
}

func TestParseShareRejected(t *testing.T) {
	t.Parallel()
	_, shares := create(t, nil, ShareSpec{K: 2, N: 3})
	good := shareTexts(t, shares)[1] // 2-of-3
	fields := strings.Split(good, ":")
	with := func(i int, v string) string {
		f := append([]string(nil), fields...)
		f[i] = v
		return strings.Join(f, ":")
	}
	payload := fields[4]
	flipped := []byte(payload)
	// Another base64url letter in the middle: different bytes, same length.
	// (Flipping a bit could leave the alphabet, e.g. 'z' to '{'.)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "not a spike-share-v1"},
		{"other label", with(0, "spike-share-v2"), "not a spike-share-v1"},
		{"missing field", strings.Join(fields[:4], ":"), "not a spike-share-v1"},
		{"extra field", good + ":x", "not a spike-share-v1"},
		{"upper-case prefix", with(1, "ABCDEF01"), "keyring prefix"},
		{"short prefix", with(1, fields[1][1:]), "keyring prefix"},
		{"index zero", with(2, "0-of-3"), "out of range"},
		{"index above n", with(2, "4-of-3"), "out of range"},
		{"leading zero", with(2, "02-of-3"), "is not <index>-of-<n>"},
		{"no of", with(2, "2/3"), "is not <index>-of-<n>"},
		{"n above max", with(2, "2-of-17"), "out of range"},
		{"k above n", with(3, "k4"), "out of range"},
		{"k zero", with(3, "k0"), "out of range"},
		{"k missing", with(3, "2"), "is not k<threshold>"},
		{"edited index", with(2, "1-of-3"), "bad checksum"},
		{"edited k", with(3, "k3"), "bad checksum"},
		{"edited prefix", with(1, "00000000"), "bad checksum"},
		{"flipped payload", with(4, string(flipped)), "bad checksum"},
		{"payload short", with(4, payload[1:]), "payload is not"},
		{"payload padded", with(4, payload+"="), "payload is not"},
		{"payload not base64url", with(4, strings.Replace(payload, payload[:1], "+", 1)), "payload is not base64url"},
	}
	for _, tt := range tests {
		_, err := ParseShare([]byte(tt.text))
		if !errors.Is(err, ErrInvalidShare) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseShare = %v, want ErrInvalidShare naming %q", tt.name, err, tt.want)
		}
	}
}

// TestOpenWithSharesThreshold checks every subset size: k or more distinct
// shares open, fewer are ErrNotEnoughShares.
func TestOpenWithSharesThreshold(t *testing.T) {
	t.Parallel()
	for _, spec := range []ShareSpec{{1, 1}, {1, 3}, {2, 3}, {3, 5}, {5, 5}, {16, 16}} {
		u, shares := create(t, nil, spec)
		for n := 0; n <= spec.N; n++ {
			// The last n shares, so subsets do not always start at index 1.
			got, err := OpenWithShares(u.Sealed(), shares[spec.N-n:])
			switch {
			case n < spec.K && !errors.Is(err, ErrNotEnoughShares):
				t.Errorf("%d of %d-of-%d: OpenWithShares = %v, want ErrNotEnoughShares", n, spec.K, spec.N, err)
			case n >= spec.K && err != nil:
				t.Errorf("%d of %d-of-%d: OpenWithShares: %v", n, spec.K, spec.N, err)
			case n >= spec.K && !got.Keyring().Equal(u.Keyring()):
				t.Errorf("%d of %d-of-%d: opened keyring differs", n, spec.K, spec.N)
			}
		}
	}
}

// TestFewerSharesRecoverAWrongKey checks what the threshold check stands in
// front of: k-1 shares interpolated as if they were enough recover some
// other unseal key, and the slot refuses it as it refuses a wrong password.
func TestFewerSharesRecoverAWrongKey(t *testing.T) {
	t.Parallel()
	for _, spec := range []ShareSpec{{2, 2}, {2, 3}, {3, 5}, {16, 16}} {
		u, shares := create(t, nil, spec)
		key, err := recoverUnsealKey(shares[:spec.K-1], spec.K-1)
		if err != nil {
			t.Fatalf("recoverUnsealKey: %v", err)
		}
		if _, err := openSharesSlot(u.Sealed(), key); !errors.Is(err, ErrWrongCredentials) {
			t.Errorf("%d-of-%d, %d shares: openSharesSlot = %v, want ErrWrongCredentials", spec.K, spec.N, spec.K-1, err)
		}

		// The same through the public API: a database writer lowers the
		// slot's k, and someone relabels k-1 shares to match.
		lowered := *u.Sealed()
		sh := *lowered.shares
		sh.k--
		lowered.shares = &sh
		relabelled := make([]Share, spec.K-1)
		for i := range relabelled {
			relabelled[i] = shares[i]
			relabelled[i].k--
			text, err := relabelled[i].MarshalText() // fresh checksum
			if err != nil {
				t.Fatal(err)
			}
			if relabelled[i], err = ParseShare(text); err != nil {
				t.Fatalf("ParseShare(relabelled): %v", err)
			}
		}
		if _, err := OpenWithShares(&lowered, relabelled); !errors.Is(err, ErrWrongCredentials) {
			t.Errorf("%d-of-%d, k lowered: OpenWithShares = %v, want ErrWrongCredentials", spec.K, spec.N, err)
		}
	}
}

func TestOpenWithSharesRejected(t *testing.T) {
	t.Parallel()
	spec := ShareSpec{K: 2, N: 3}
	u, shares := create(t, nil, spec)
	other, otherShares := create(t, nil, spec)
	rekeyed, newShares, err := u.Rekey(nil, Params{}, spec)
	if err != nil {
		t.Fatalf("Rekey: %v", err)
	}
	t.Cleanup(rekeyed.Drop)
	wrongValue := shares[1]
	wrongValue.value = otherShares[1].value // a valid scalar, but not this split's
	_, otherSpecShares := create(t, nil, ShareSpec{K: 2, N: 4})
	relabelledSpec := otherSpecShares[1]
	relabelledSpec.idPrefix, relabelledSpec.split = shares[0].idPrefix, shares[0].split
	tests := []struct {
		name   string
		s      *Sealed
		shares []Share
		want   error
		msg    string
	}{
		{"other keyring", other.Sealed(), shares[:2], ErrInvalidShare, "belongs to keyring"},
		{"mixed keyrings", u.Sealed(), []Share{shares[0], otherShares[1]}, ErrInvalidShare, "belongs to keyring"},
		{"old shares after rekey", rekeyed.Sealed(), shares[:2], ErrInvalidShare, "another split"},
		{"old and new shares", rekeyed.Sealed(), []Share{newShares[0], shares[1]}, ErrInvalidShare, "another split"},
		{"new shares on old sealed", u.Sealed(), newShares[:2], ErrInvalidShare, "another split"},
		{"other k or n", u.Sealed(), []Share{shares[0], relabelledSpec}, ErrInvalidShare, "2-of-4 split"},
		{"duplicate", u.Sealed(), []Share{shares[0], shares[0]}, ErrInvalidShare, "given twice"},
		{"duplicate index, other value", u.Sealed(), []Share{shares[1], wrongValue}, ErrInvalidShare, "given twice"},
		{"one", u.Sealed(), shares[:1], ErrNotEnoughShares, "have 1 of the 2"},
		{"none", u.Sealed(), nil, ErrNotEnoughShares, "have 0 of the 2"},
		{"wrong value", u.Sealed(), []Share{shares[0], wrongValue}, ErrWrongCredentials, ""},
	}
	for _, tt := range tests {
		_, err := OpenWithShares(tt.s, tt.shares)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: OpenWithShares = %v, want %v naming %q", tt.name, err, tt.want, tt.msg)
		}
	}
	if _, err := OpenWithShares(rekeyed.Sealed(), newShares[1:]); err != nil {
		t.Errorf("new shares on the rekeyed keyring: %v", err)
	}
}

func TestShareDrop(t *testing.T) {
	t.Parallel()
	_, shares := create(t, nil, ShareSpec{K: 1, N: 2})
	s := shares[0]
	s.Drop()
	if diff := cmp.Diff(make([]byte, scalarSize), s.value[:]); diff != "" {
		t.Errorf("value after Drop (-want +got):\n%s", diff)
	}
	if bytes.Equal(shares[0].value[:], s.value[:]) {
		t.Error("Drop of a copy zeroed the original")
	}
}

// TestRaisedThresholdRefused checks that a slot's k is bound in its
// additional data: shares of a 2-of-3 split relabelled 3-of-3 still
// interpolate the unseal key, so only the binding refuses them.
func TestRaisedThresholdRefused(t *testing.T) {
	t.Parallel()
	u, shares := create(t, nil, ShareSpec{K: 2, N: 3})
	raised := *u.Sealed()
	sh := *raised.shares
	sh.k = 3
	raised.shares = &sh
	relabelled := append([]Share(nil), shares...)
	for i := range relabelled {
		relabelled[i].k = 3
	}
	if _, err := OpenWithShares(&raised, relabelled); !errors.Is(err, ErrWrongCredentials) {
		t.Errorf("OpenWithShares = %v, want ErrWrongCredentials", err)
	}
}
