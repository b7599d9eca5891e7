package keyring

import (
	"errors"
	"testing"
)

func TestShareRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKeyring(t)
	addVersion(t, k)
	req, err := NewShareRequest()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Share(req.PublicKey())
	if err != nil {
		t.Fatalf("Share: %v", err)
	}
	got, err := req.Open(k.ID(), sealed)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer got.Drop()
	if !got.Equal(k) {
		t.Error("the keyring received is not the keyring shared")
	}
}

func TestShareRefused(t *testing.T) {
	t.Parallel()
	k, other := newKeyring(t), newKeyring(t)
	req, err := NewShareRequest()
	if err != nil {
		t.Fatal(err)
	}
	eavesdropper, err := NewShareRequest()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Share(req.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), sealed...)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name   string
		req    *ShareRequest
		id     []byte
		sealed []byte
	}{
		{"another request's key", eavesdropper, k.ID(), sealed},
		{"claimed as another keyring", req, other.ID(), sealed},
		{"tampered", req, k.ID(), flipped},
		{"truncated", req, k.ID(), sealed[:40]},
		{"short id", req, k.ID()[:8], sealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.req.Open(tt.id, tt.sealed)
			if !errors.Is(err, ErrShare) {
				t.Fatalf("Open = %v, %v; want ErrShare", got, err)
			}
		})
	}
	if _, err := k.Share([]byte("not a public key")); err == nil {
		t.Error("Share accepted a malformed public key")
	}
}
