package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), dsn, Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckSchema(t.Context()); err == nil || !strings.Contains(err.Error(), "schema version is 0") {
		t.Errorf("CheckSchema before Migrate = %v, want version 0 reported", err)
	}
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Errorf("CheckSchema after Migrate = %v, want nil", err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version) VALUES (9999)"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err == nil || !strings.Contains(err.Error(), "9999") {
		t.Errorf("CheckSchema on a newer schema = %v, want version 9999 reported", err)
	}
	if st := s.Stat(); st.MaxConns() != 2 {
		t.Errorf("Stat().MaxConns() = %d, want 2", st.MaxConns())
	}
}

// A secret's versions go with it (migration 0013's trigger), including a
// version committed by a writer that held the secret's row while the
// DELETE waited for it; other secrets' versions stay.
func TestSecretDeleteTakesItsVersions(t *testing.T) {
	t.Parallel()
	_, dsn := newStore(t)
	ctx := t.Context()
	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.WithoutCancel(ctx)) })
		return c
	}
	writer, deleter, watcher := connect(), connect(), connect()
	exec := func(c *pgx.Conn, sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, p := range []string{"a", "b"} {
		exec(writer, `INSERT INTO secrets (path, current_version, oldest_version) VALUES ($1, 1, 1)`, p)
		exec(writer, `INSERT INTO secret_versions (path, version, dek_id, sealed, created_by) VALUES ($1, 1, '\x01', '\x02', 'w')`, p)
	}
	// The writer holds a's row and adds version 2 when the DELETE waits.
	exec(writer, `BEGIN`)
	exec(writer, `SELECT 1 FROM secrets WHERE path = 'a' FOR UPDATE`)
	deleted := make(chan error, 1)
	go func() {
		_, err := deleter.Exec(ctx, `DELETE FROM secrets WHERE path = 'a'`)
		deleted <- err
	}()
	// Watched from a connection of its own: in the writer's transaction,
	// pg_stat_activity would stay as it was first read.
	deadline := time.Now().Add(30 * time.Second)
	for waiting := false; !waiting; {
		select {
		case err := <-deleted:
			t.Fatalf("the DELETE ended (%v) while the writer held the row", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the DELETE was not seen waiting for the writer's row within 30 s")
		}
		if err := watcher.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE query = 'DELETE FROM secrets WHERE path = ''a''' AND wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	exec(writer, `INSERT INTO secret_versions (path, version, dek_id, sealed, created_by) VALUES ('a', 2, '\x01', '\x02', 'w')`)
	exec(writer, `COMMIT`)
	if err := <-deleted; err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	count := func(p string) int {
		var n int
		if err := writer.QueryRow(ctx, `SELECT count(*) FROM secret_versions WHERE path = $1`, p).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("a"); n != 0 {
		t.Errorf("%d version rows of the deleted secret remain, want none", n)
	}
	if n := count("b"); n != 1 {
		t.Errorf("the other secret has %d version rows, want 1", n)
	}
}
