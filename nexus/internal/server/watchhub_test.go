package server

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// fakeChangeLog holds rows (xid i for row i) all settled below settled.
type fakeChangeLog struct {
	mu       sync.Mutex
	err      error
	rows     []postgres.ChangeRow
	settled  uint64
	identity string
}

func (f *fakeChangeLog) add(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		x := uint64(len(f.rows) + 1)
		f.rows = append(f.rows, postgres.ChangeRow{Position: postgres.Position{XID: x, ID: int64(x)}, Path: "p"})
		f.settled = x + 1
	}
}

func (f *fakeChangeLog) Changes(_ context.Context, from postgres.Position, limit int) ([]postgres.ChangeRow, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, 0, f.err
	}
	var out []postgres.ChangeRow
	for _, r := range f.rows {
		if from.Before(r.Position) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, f.settled, nil
}

func (f *fakeChangeLog) ChangeLogState(context.Context) (postgres.ChangeLog, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return postgres.ChangeLog{Identity: f.identity, Settled: f.settled, Next: f.settled + 1}, nil
}

// The hub reads each row once into its buffer, keeps the newest hubBuffer
// rows, and a reader walking the buffer from its start gets every row
// after it once, in order; a reader behind the buffer is told to read the
// database.
func TestWatchHubBuffer(t *testing.T) {
	t.Parallel()
	log := &fakeChangeLog{identity: "id"}
	h := newWatchHub(log, WatchConfig{}, slog.New(slog.DiscardHandler))
	leave, err := h.join("a")
	if err != nil {
		t.Fatal(err)
	}
	defer leave()
	ctx := t.Context()
	h.poll(ctx) // ready, at the settled mark (no rows yet)
	if r := h.read(postgres.Position{}, 10); !r.ready || !r.ok || len(r.rows) != 0 {
		t.Fatalf("a ready hub without rows: %+v", r)
	}
	const n = hubBuffer + 2500
	log.add(n)
	for range 5 {
		h.poll(ctx)
	}
	if h.pos != (postgres.Position{XID: n + 1}) || len(h.buf) != hubBuffer {
		t.Fatalf("hub at %v with %d rows, want {%d 0} and %d", h.pos, len(h.buf), n+1, hubBuffer)
	}
	if r := h.read(postgres.Position{XID: 1}, 10); r.ok {
		t.Fatal("a position behind the buffer was served from it")
	}
	pos, seen := h.start, 0
	for {
		r := h.read(pos, maxWatchEvents)
		if !r.ok {
			t.Fatalf("read at %v: not served", pos)
		}
		for _, row := range r.rows {
			if !pos.Before(row.Position) {
				t.Fatalf("row %v does not come after %v", row.Position, pos)
			}
			pos = row.Position
			seen++
		}
		pos = r.next
		if !r.more {
			break
		}
	}
	if seen != hubBuffer || pos != h.pos {
		t.Fatalf("read %d rows up to %v, want %d up to %v", seen, pos, hubBuffer, h.pos)
	}
	// With nobody watching, the hub forgets its buffer.
	leave()
	h.poll(ctx)
	if h.ready || h.buf != nil {
		t.Fatal("the hub kept its buffer with nobody watching")
	}
}

func TestWatchHubLimits(t *testing.T) {
	t.Parallel()
	h := newWatchHub(&fakeChangeLog{}, WatchConfig{MaxStreamsPerCaller: 2, MaxStreams: 3}, slog.New(slog.DiscardHandler))
	a1, err1 := h.join("a")
	_, err2 := h.join("a")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := h.join("a"); fault.CodeOf(err) != fault.TooMany {
		t.Fatalf("a third stream of one caller: %v, want TooMany", err)
	}
	if _, err := h.join("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.join("c"); fault.CodeOf(err) != fault.TooMany {
		t.Fatalf("a fourth stream on the Nexus: %v, want TooMany", err)
	}
	a1()
	a1() // leaving twice counts once
	if _, err := h.join("c"); err != nil {
		t.Fatalf("after one left: %v", err)
	}
	if _, err := h.join("d"); fault.CodeOf(err) != fault.TooMany {
		t.Fatalf("full again: %v, want TooMany", err)
	}
}

// While the change log cannot be read, streams wait; after maxHubOutage
// they are told to end (Unavailable), and reading again clears it.
func TestWatchHubOutage(t *testing.T) {
	t.Parallel()
	log := &fakeChangeLog{identity: "id"}
	h := newWatchHub(log, WatchConfig{}, slog.New(slog.DiscardHandler))
	if _, err := h.join("a"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	h.poll(ctx)
	log.mu.Lock()
	log.err = fault.New(fault.Unavailable, "database unavailable")
	log.mu.Unlock()
	h.poll(ctx)
	if r := h.read(h.pos, 10); r.down {
		t.Fatal("down at the first failed poll")
	}
	h.mu.Lock()
	h.failingSince = time.Now().Add(-maxHubOutage - time.Second)
	h.mu.Unlock()
	if r := h.read(h.pos, 10); !r.down {
		t.Fatal("not down after maxHubOutage of failed polls")
	}
	log.mu.Lock()
	log.err = nil
	log.mu.Unlock()
	h.poll(ctx)
	if r := h.read(h.pos, 10); r.down {
		t.Fatal("still down after a poll that worked")
	}
}
