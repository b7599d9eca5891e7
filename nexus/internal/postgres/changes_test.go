package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/secret"
)

// changePut writes a new version of path as a request does: with its
// audit record and its change log row.
func changePut(t *testing.T, s *Store, path string) {
	t.Helper()
	_, _, err := s.WriteSecret(t.Context(), auditRec(t, s), path, func(cur *secret.Stored, _ []secret.Row) (secret.Write, []byte, error) {
		h := secret.Head{Incarnation: make([]byte, secret.IncarnationSize)}
		w := secret.Write{Create: cur == nil}
		if cur != nil {
			h.Current, h.Oldest = cur.Current, cur.Oldest
		}
		v := h.Add("me", nil, DefaultMaxVersions)
		h.Plain(&w)
		w.Head = []byte("test head")
		w.Insert = &secret.Row{Version: v, DEKID: testDEK, Sealed: []byte("x"), CreatedBy: "me", CreatedAt: time.Now()}
		w.Change = secret.ChangeWritten
		return w, []byte("{}"), nil
	})
	if err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
}

type seen struct {
	Path     string
	Kind     secret.ChangeKind
	Versions []int64
}

func seenOf(rows []ChangeRow) []seen {
	var out []seen
	for _, r := range rows {
		out = append(out, seen{r.Path, r.Kind, r.Versions})
	}
	return out
}

// Rows of a transaction still running are held back, and so are the rows
// of every later transaction, even committed: a reader that moves on to
// the settled mark never skips a row that commits afterwards. Then
// everything comes in (xid, id) order, once.
func TestChangesAreReadOnceInOrderAfterTheyHaveSettled(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	ctx := t.Context()

	start, err := s.ChangeLogState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := Position{XID: start.Settled}

	// A writer that began first and commits last.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var slow string
	if err := tx.QueryRow(ctx, `INSERT INTO secret_changes (xid, path, kind) VALUES (pg_current_xact_id(), 'slow', 5) RETURNING xid::text`).Scan(&slow); err != nil {
		t.Fatal(err)
	}
	slowXID, err := parseXID(slow)
	if err != nil {
		t.Fatal(err)
	}
	changePut(t, s, "a")
	changePut(t, s, "a")
	changePut(t, s, "b")

	rows, settled, err := s.Changes(ctx, from, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Fatalf("read %v while an older writer runs, want nothing", seenOf(rows))
	}
	if settled > slowXID {
		t.Fatalf("settled mark %d moved past the running writer %d", settled, slowXID)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMetadata(ctx, auditRec(t, s), "b"); err != nil {
		t.Fatal(err)
	}

	// In pages of two: every row once, in order.
	var got []ChangeRow
	pos := from
	for range 10 {
		rows, settled, err := s.Changes(ctx, pos, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rows...)
		if len(rows) == 2 {
			pos = rows[1].Position
			continue
		}
		if next := (Position{XID: settled}); pos.Before(next) {
			pos = next
		}
		if len(rows) == 0 {
			break
		}
	}
	want := []seen{
		{"slow", secret.ChangeMetadata, []int64{}},
		{"a", secret.ChangeWritten, []int64{1}},
		{"a", secret.ChangeWritten, []int64{2}},
		{"b", secret.ChangeWritten, []int64{1}},
		{"b", secret.ChangeRemoved, []int64{}},
	}
	if d := cmp.Diff(want, seenOf(got)); d != "" {
		t.Fatalf("changes (-want +got):\n%s", d)
	}
	for i := 1; i < len(got); i++ {
		if !got[i-1].Position.Before(got[i].Position) {
			t.Fatalf("row %d at %v does not come after %v", i, got[i].Position, got[i-1].Position)
		}
	}
	// Nothing more from where the reader stopped.
	if rows, _, err := s.Changes(ctx, pos, 100); err != nil || len(rows) != 0 {
		t.Fatalf("after the end: %v, %v; want nothing", seenOf(rows), err)
	}
}

// A maintenance write (no change kind) leaves no row; pruning deletes old
// rows and raises the pruning mark past them.
func TestChangeLogPruning(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	if err := s.AdoptSecret(ctx, "m", func(cur *secret.Stored, _ []secret.Row) (secret.Write, []byte, error) {
		w := secret.Write{Create: true, Incarnation: make([]byte, secret.IncarnationSize), Head: []byte("h")}
		return w, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	changePut(t, s, "old")
	changePut(t, s, "new")
	rows, _, err := s.Changes(ctx, Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]seen{{"old", secret.ChangeWritten, []int64{1}}, {"new", secret.ChangeWritten, []int64{1}}}, seenOf(rows)); d != "" {
		t.Fatalf("changes (-want +got):\n%s", d)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE secret_changes SET created_at = now() - interval '2 days' WHERE path = 'old'`); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneChanges(ctx, 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PruneChanges = %d, %v; want 1 row", n, err)
	}
	l, err := s.ChangeLogState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Pruned != rows[0].XID {
		t.Fatalf("pruning mark %d, want the pruned row's xid %d", l.Pruned, rows[0].XID)
	}
	if l.Identity == "" || l.Next < l.Settled {
		t.Fatalf("state %+v: want an identity and next >= settled", l)
	}
	if n, err := s.PruneChanges(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("second prune = %d, %v; want nothing", n, err)
	}
	if l2, _ := s.ChangeLogState(ctx); l2.Pruned != l.Pruned {
		t.Fatalf("a prune of nothing moved the mark to %d", l2.Pruned)
	}
}
