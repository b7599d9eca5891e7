package audit

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

// noStore is a store that is never reached: the test only chains records.
type noStore struct{ Store }

type fixedKey struct{}

func (fixedKey) MACKey(context.Context) ([]byte, error) { return bytes.Repeat([]byte{1}, 32), nil }
func (fixedKey) Unsealed() bool                         { return true }

// A transaction that certainly did not commit gives its lane back as it
// was; only an uncertain one retires its lane for a new chain.
func TestLanesSurviveAbortedTransactions(t *testing.T) {
	trail, err := New(noStore{}, fixedKey{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	take := func() (*Entry, Record) {
		t.Helper()
		e := trail.Begin(ctx, "r", "spiffe://spike.local/x", "127.0.0.1:1", "/test/Mutate")
		e.Allow("test")
		rows, err := e.Rows(ctx)
		if err != nil || len(rows) != 1 {
			t.Fatalf("Rows = %v, %v", rows, err)
		}
		return e, rows[0]
	}
	for range 3 * lanes {
		e, r := take()
		if r.Lane >= lanes || r.Seq != 1 {
			t.Fatalf("after aborted transactions: lane %d seq %d, want one of the first %d lanes at seq 1", r.Lane, r.Seq, lanes)
		}
		e.Aborted()
	}
	e, r := take()
	e.Done(false) // uncertain: this lane is retired
	seen := map[int16]bool{}
	for range lanes {
		e, r2 := take()
		seen[r2.Lane] = true
		e.Aborted()
	}
	if seen[r.Lane] || !seen[lanes] {
		t.Fatalf("lanes after an uncertain commit: %v; want lane %d retired and lane %d new", seen, r.Lane, lanes)
	}
	// A committed record moves its lane on.
	for range lanes {
		e, _ := take()
		e.Done(true)
	}
	_, r3 := take()
	if r3.Seq != 2 {
		t.Fatalf("after commits: seq %d, want 2", r3.Seq)
	}
}
