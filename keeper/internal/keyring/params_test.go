package keyring

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParamsRoundTrip(t *testing.T) {
	t.Parallel()
	want, err := NewParams(3, 65536, 4)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var got Params
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
}

func TestNewParamsFreshSalt(t *testing.T) {
	t.Parallel()
	a, err := NewParams(1, 1024, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	b, err := NewParams(1, 1024, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	if bytes.Equal(a.Salt, b.Salt) {
		t.Error("two NewParams calls returned the same salt")
	}
}

func TestParamsRejected(t *testing.T) {
	t.Parallel()
	salt := make([]byte, SaltSize)
	good := Params{Time: 1, MemoryKiB: 1024, Threads: 1, Salt: salt}
	encode := func(p Params) []byte {
		b, err := good.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary: %v", err)
		}
		// Write p's fields over the valid encoding so invalid values can be
		// encoded at all.
		b[1], b[2], b[3], b[4] = byte(p.Time>>24), byte(p.Time>>16), byte(p.Time>>8), byte(p.Time)
		b[5], b[6], b[7], b[8] = byte(p.MemoryKiB>>24), byte(p.MemoryKiB>>16), byte(p.MemoryKiB>>8), byte(p.MemoryKiB)
		b[9] = p.Threads
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{2}, encode(good)[1:]...)},
		{"version zero", append([]byte{0}, encode(good)[1:]...)},
		{"short", encode(good)[:paramsSize-1]},
		{"long", append(encode(good), 0)},
		{"time zero", encode(Params{Time: 0, MemoryKiB: 1024, Threads: 1})},
		{"time absurd", encode(Params{Time: MaxTime + 1, MemoryKiB: 1024, Threads: 1})},
		{"threads zero", encode(Params{Time: 1, MemoryKiB: 1024, Threads: 0})},
		{"memory over 4 GiB", encode(Params{Time: 1, MemoryKiB: MaxMemoryKiB + 1, Threads: 1})},
		{"memory max uint32", encode(Params{Time: 1, MemoryKiB: ^uint32(0), Threads: 1})},
		{"memory below 8 KiB per thread", encode(Params{Time: 1, MemoryKiB: 31, Threads: 4})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p Params
			err := p.UnmarshalBinary(tt.b)
			if !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("UnmarshalBinary = %v, want ErrInvalidParams", err)
			}
			if diff := cmp.Diff(Params{}, p); diff != "" {
				t.Errorf("params changed on error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParamsMarshalRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Params
	}{
		{"salt missing", Params{Time: 1, MemoryKiB: 1024, Threads: 1}},
		{"salt short", Params{Time: 1, MemoryKiB: 1024, Threads: 1, Salt: make([]byte, SaltSize-1)}},
		{"salt long", Params{Time: 1, MemoryKiB: 1024, Threads: 1, Salt: make([]byte, SaltSize+1)}},
		{"time zero", Params{MemoryKiB: 1024, Threads: 1, Salt: make([]byte, SaltSize)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.p.MarshalBinary(); !errors.Is(err, ErrInvalidParams) {
				t.Errorf("MarshalBinary = %v, want ErrInvalidParams", err)
			}
		})
	}
}
