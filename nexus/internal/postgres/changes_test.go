package postgres

import (
	"context"
	"slices"
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
	// The state names the running writer as in flight, and (below) none
	// of the writes that had committed.
	mid, err := s.ChangeLogState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mid.InFlight, slowXID) || mid.Settled > slowXID || slowXID >= mid.Next || !slices.IsSorted(mid.InFlight) {
		t.Fatalf("state %+v while writer %d runs: want it in flight, between the marks", mid, slowXID)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMetadata(ctx, auditRec(t, s), "b"); err != nil {
		t.Fatal(err)
	}

	// In pages of two: every row once, in order. Transactions of other
	// tests (xids are the cluster's) may hold the settled mark back a
	// while.
	var got []ChangeRow
	pos := from
	for deadline := time.Now().Add(20 * time.Second); len(got) < 5 && time.Now().Before(deadline); {
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
			time.Sleep(20 * time.Millisecond)
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
		if !got[i-1].Before(got[i].Position) {
			t.Fatalf("row %d at %v does not come after %v", i, got[i].Position, got[i-1].Position)
		}
	}
	// Nothing more from where the reader stopped.
	if rows, _, err := s.Changes(ctx, pos, 100); err != nil || len(rows) != 0 {
		t.Fatalf("after the end: %v, %v; want nothing", seenOf(rows), err)
	}
	for _, r := range got[1:4] {
		if slices.Contains(mid.InFlight, r.XID) || r.XID >= mid.Next {
			t.Fatalf("committed write %+v listed in flight (or later) in %+v", r, mid)
		}
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
	var rows []ChangeRow
	for deadline := time.Now().Add(20 * time.Second); len(rows) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if rows, _, err = s.Changes(ctx, Position{}, 100); err != nil {
			t.Fatal(err)
		}
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

// The serving role may add and prune change log rows but not edit them,
// and may only read and update the change log's state row.
func TestServingRoleOnTheChangeLog(t *testing.T) {
	t.Parallel()
	_, serving, _ := servingStores(t)
	ctx := t.Context()
	for _, c := range []struct {
		sql  string
		want string // SQLSTATE; "" for allowed
	}{
		{`INSERT INTO secret_changes (xid, path, kind) VALUES (pg_current_xact_id(), 'p', 1)`, ""},
		{`SELECT count(*) FROM secret_changes`, ""},
		{`DELETE FROM secret_changes WHERE path = 'none'`, ""},
		{`UPDATE secret_changes SET kind = 2`, "42501"},
		{`TRUNCATE secret_changes`, "42501"},
		{`SELECT identity FROM watch_state`, ""},
		{`UPDATE watch_state SET pruned_xid = pruned_xid`, ""},
		{`INSERT INTO watch_state (id, identity, pruned_xid) VALUES (2, gen_random_uuid(), '0')`, "42501"},
		{`DELETE FROM watch_state`, "42501"},
	} {
		_, err := serving.pool.Exec(ctx, c.sql)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want it allowed", c.sql, err)
			}
			continue
		}
		wantSQLState(t, c.sql, err, c.want)
	}
	if _, err := serving.PruneChanges(ctx, 24*time.Hour); err != nil {
		t.Errorf("PruneChanges as the serving role: %v", err)
	}
}
