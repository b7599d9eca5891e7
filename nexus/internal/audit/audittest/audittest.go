// Package audittest gives tests of code that changes the store what every
// change needs: the audit record of the request making it. The records are
// real (a real Trail, MACed under a fixed test key), so a test can also
// check what was written.
package audittest

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/audit"
)

// Caller is the SPIFFE ID test records name as the caller.
const Caller = "spiffe://spike.local/test"

// fixedKey is an unsealed key manager with a constant MAC key.
type fixedKey struct{}

func (fixedKey) MACKey(context.Context) ([]byte, error) { return bytes.Repeat([]byte{0x5a}, 32), nil }
func (fixedKey) Unsealed() bool                         { return true }

// Trail returns a trail writing to store, with records MACed under a fixed
// key. Records that belong to no mutation need Trail.Run.
func Trail(t testing.TB, store audit.Store) *audit.Trail {
	t.Helper()
	trail, err := audit.New(store, fixedKey{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return trail
}

// Record begins the audit record of a test request, allowed, for a store
// method that changes something.
func Record(t testing.TB, store audit.Store) *audit.Entry {
	t.Helper()
	e := Trail(t, store).Begin(t.Context(), "test", Caller, "127.0.0.1:1", "/test/Mutate")
	e.Allow("test")
	return e
}
