package keyring

import (
	"errors"
	"runtime"
	"testing"
)

// TestOpenOverTheCapAllocatesNothing opens a sealed keyring whose stored
// parameters ask for 4 GiB and 2^32-1 passes, as a database writer could
// make them. Open must refuse them before deriving anything: the test
// process allocates far less than the memory cap meanwhile. It does not
// run in parallel, so that other tests' allocations do not count.
func TestOpenOverTheCapAllocatesNothing(t *testing.T) {
	password := []byte("correct horse battery staple")
	ring, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer ring.Drop()
	params, err := NewParams(1, 1024, 1)
	if err != nil {
		t.Fatalf("NewParams: %v", err)
	}
	kdfParams, ciphertext, err := Seal(ring, password, params)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	tests := []struct {
		name  string
		alter func(b []byte)
	}{
		{"memory 4 GiB", func(b []byte) { copy(b[5:9], []byte{0x00, 0x40, 0x00, 0x00}) }},
		{"memory max uint32", func(b []byte) { copy(b[5:9], []byte{0xff, 0xff, 0xff, 0xff}) }},
		{"time max uint32", func(b []byte) { copy(b[1:5], []byte{0xff, 0xff, 0xff, 0xff}) }},
		{"threads 255 and 255 MiB", func(b []byte) { b[9] = 255; copy(b[5:9], []byte{0x00, 0x03, 0xfc, 0x00}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored := append([]byte(nil), kdfParams...)
			tt.alter(stored)

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, err := Open(ring.ID(), stored, ciphertext, password)
			runtime.ReadMemStats(&after)

			if !errors.Is(err, ErrInvalidParams) || !errors.Is(err, ErrMalformed) {
				t.Errorf("Open = %v, want ErrMalformed and ErrInvalidParams", err)
			}
			if got != nil {
				got.Drop()
				t.Error("Open returned a keyring")
			}
			const limit = 1 << 20 // 1 MiB: 1/256 of MaxMemoryKiB
			if grew := after.TotalAlloc - before.TotalAlloc; grew > limit {
				t.Errorf("Open allocated %d bytes, want under %d", grew, limit)
			}
		})
	}
}
