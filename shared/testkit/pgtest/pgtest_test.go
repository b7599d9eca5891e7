package pgtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDatabaseIsolated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsnA := pgtest.NewDatabase(t)
	dsnB := pgtest.NewDatabase(t)
	if dsnA == dsnB {
		t.Fatalf("two databases share a DSN: %s", dsnA)
	}
	for _, dsn := range []string{dsnA, dsnB} {
		if !strings.Contains(dsn, "host=127.0.0.1") || !strings.Contains(dsn, "sslmode=disable") {
			t.Errorf("DSN %q: want host=127.0.0.1 and sslmode=disable", dsn)
		}
	}

	a, err := pgx.Connect(ctx, dsnA)
	if err != nil {
		t.Fatalf("connect A: %v", err)
	}
	defer a.Close(ctx)
	b, err := pgx.Connect(ctx, dsnB)
	if err != nil {
		t.Fatalf("connect B: %v", err)
	}
	defer b.Close(ctx)

	if _, err := a.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("create table in A: %v", err)
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count in A = %d, %v; want 1, nil", n, err)
	}
	var exists bool
	if err := b.QueryRow(ctx, "SELECT to_regclass('public.t') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatalf("look for table in B: %v", err)
	}
	if exists {
		t.Error("table created in database A is visible in database B")
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	t.Parallel()
	var dsn string
	var open *pgx.Conn
	t.Run("user", func(t *testing.T) {
		dsn = pgtest.NewDatabase(t)
		var err error
		// Left open past the subtest on purpose: the drop must force it closed.
		open, err = pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
	})
	if open != nil {
		defer open.Close(t.Context())
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	admin, err := pgx.Connect(t.Context(), pgtest.AdminDSN())
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer admin.Close(t.Context())
	var n int
	err = admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", cfg.Database).Scan(&n)
	if err != nil {
		t.Fatalf("look for database: %v", err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test finished", cfg.Database)
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster")
	c, err := pgtest.Start(dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	conn, err := pgx.Connect(t.Context(), c.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var one int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 = %d, %v", one, err)
	}
	_ = conn.Close(t.Context())
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir still there after Stop: %v", err)
	}
	if _, err := pgx.Connect(t.Context(), c.DSN("postgres")); err == nil {
		t.Error("server still accepts connections after Stop")
	}
}
