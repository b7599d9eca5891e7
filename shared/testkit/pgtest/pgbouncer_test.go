package pgtest_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// The bouncer pools in transaction mode: with one server connection, two
// clients share a server session, so named prepared statements collide,
// while the unnamed statement (cached descriptions) works; startup
// parameters pgbouncer does not know are refused.
func TestBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewRoles(t, "")
	b := pgtest.StartBouncer(t, db.Serving, pgtest.BouncerOptions{PoolSize: 1, Users: []string{db.ServingRole}})
	dsn := b.DSN(db.Serving)
	if !strings.Contains(dsn, "port=") || dsn == db.Serving {
		t.Fatalf("DSN through the bouncer = %q", dsn)
	}

	connect := func(dsn string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect through pgbouncer: %v\n%s", err, b.LogTail())
		}
		t.Cleanup(func() { _ = c.Close(ctx) })
		return c
	}
	const query = "SELECT $1::int + 1"
	for _, mode := range []string{"cache_describe", "exec"} {
		x, y := connect(dsn+" default_query_exec_mode="+mode), connect(dsn+" default_query_exec_mode="+mode)
		for i, c := range []*pgx.Conn{x, y, x, y} {
			var n int
			if err := c.QueryRow(ctx, query, i).Scan(&n); err != nil || n != i+1 {
				t.Errorf("%s: query %d = %d, %v; want %d", mode, i, n, err, i+1)
			}
		}
	}

	x, y := connect(dsn), connect(dsn) // cache_statement: named statements
	var n int
	if err := x.QueryRow(ctx, query, 1).Scan(&n); err != nil {
		t.Fatalf("first named statement: %v", err)
	}
	if err := y.QueryRow(ctx, query, 1).Scan(&n); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("the same named statement from a second client on the one server session: %v; want already exists", err)
	}

	_, err := pgx.Connect(ctx, dsn+" statement_timeout=15s")
	if err == nil || !strings.Contains(err.Error(), "unsupported startup parameter") {
		t.Errorf("connect with statement_timeout as a startup parameter: %v; want unsupported startup parameter", err)
	}
}
