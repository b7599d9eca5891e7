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
		msg  string // the error's text, when it matters
	}{
		{name: "empty", b: nil},
		{name: "unknown version", b: append([]byte{2}, encode(good)[1:]...)},
		{name: "version zero", b: append([]byte{0}, encode(good)[1:]...)},
		{name: "short", b: encode(good)[:paramsSize-1]},
		{name: "long", b: append(encode(good), 0)},
		{name: "time zero", b: encode(Params{Time: 0, MemoryKiB: 1024, Threads: 1})},
		{name: "threads zero", b: encode(Params{Time: 1, MemoryKiB: 1024, Threads: 0})},
		{name: "memory below 8 KiB per thread", b: encode(Params{Time: 1, MemoryKiB: 31, Threads: 4}),
			msg: "invalid kdf params: memory 31 KiB is below 8 KiB per thread (32 KiB)"},
		// Over the caps: what a database writer could store to make Keeper
		// allocate or compute without bound.
		{name: "time over the cap", b: encode(Params{Time: MaxTime + 1, MemoryKiB: 1024, Threads: 1}),
			msg: "invalid kdf params: time 17 is over the cap of 16 passes"},
		{name: "time the old cap", b: encode(Params{Time: 64, MemoryKiB: 1024, Threads: 1}),
			msg: "invalid kdf params: time 64 is over the cap of 16 passes"},
		{name: "time max uint32", b: encode(Params{Time: ^uint32(0), MemoryKiB: 1024, Threads: 1}),
			msg: "invalid kdf params: time 4294967295 is over the cap of 16 passes"},
		{name: "threads over the cap", b: encode(Params{Time: 1, MemoryKiB: 1024, Threads: MaxThreads + 1}),
			msg: "invalid kdf params: threads 17 is over the cap of 16"},
		{name: "threads 255", b: encode(Params{Time: 1, MemoryKiB: 1 << 20, Threads: 255}),
			msg: "invalid kdf params: threads 255 is over the cap of 16"},
		{name: "memory over the cap", b: encode(Params{Time: 1, MemoryKiB: MaxMemoryKiB + 1, Threads: 1}),
			msg: "invalid kdf params: memory 262145 KiB is over the cap of 262144 KiB"},
		{name: "memory 4 GiB, the old cap", b: encode(Params{Time: 1, MemoryKiB: 4 << 20, Threads: 1}),
			msg: "invalid kdf params: memory 4194304 KiB is over the cap of 262144 KiB"},
		{name: "memory max uint32", b: encode(Params{Time: 1, MemoryKiB: ^uint32(0), Threads: 1}),
			msg: "invalid kdf params: memory 4294967295 KiB is over the cap of 262144 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p Params
			err := p.UnmarshalBinary(tt.b)
			if !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("UnmarshalBinary = %v, want ErrInvalidParams", err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("UnmarshalBinary = %q, want %q", err, tt.msg)
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

// TestParamsAtTheCaps checks that the caps themselves are accepted, and
// that Keeper's default cost is well inside them.
func TestParamsAtTheCaps(t *testing.T) {
	t.Parallel()
	salt := make([]byte, SaltSize)
	for _, p := range []Params{
		{Time: MaxTime, MemoryKiB: MaxMemoryKiB, Threads: MaxThreads, Salt: salt},
		{Time: 3, MemoryKiB: 64 << 10, Threads: 4, Salt: salt},
		{Time: 1, MemoryKiB: 8 * MaxThreads, Threads: MaxThreads, Salt: salt},
	} {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%+v): %v", p, err)
		}
		var got Params
		if err := got.UnmarshalBinary(b); err != nil {
			t.Errorf("UnmarshalBinary(%+v): %v", p, err)
		}
	}
}
