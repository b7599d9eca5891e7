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

// NewRoles gives a database owned by a role of its own and a serving role
// that can connect but has no privileges of its own; both roles and the
// database are gone after the test.
func TestNewRoles(t *testing.T) {
	t.Parallel()
	var db pgtest.Roles
	t.Run("user", func(t *testing.T) {
		db = pgtest.NewRoles(t, "")
		ctx := t.Context()
		if db.OwnerRole == db.ServingRole || db.Owner == db.Serving {
			t.Fatalf("owner and serving role are the same: %+v", db)
		}
		owner, err := pgx.Connect(ctx, db.Owner)
		if err != nil {
			t.Fatalf("connect as owner: %v", err)
		}
		defer owner.Close(ctx)
		var user string
		var ownsDB bool
		if err := owner.QueryRow(ctx, `SELECT current_user, pg_has_role(current_user, datdba, 'USAGE')
			FROM pg_database WHERE datname = current_database()`).Scan(&user, &ownsDB); err != nil || user != db.OwnerRole || !ownsDB {
			t.Fatalf("owner connection: user %q, owns the database %v (%v)", user, ownsDB, err)
		}
		if _, err := owner.Exec(ctx, "CREATE TABLE t (v int)"); err != nil {
			t.Fatalf("the owner cannot create a table: %v", err)
		}
		serving, err := pgx.Connect(ctx, db.Serving)
		if err != nil {
			t.Fatalf("connect as serving role: %v", err)
		}
		defer serving.Close(ctx)
		if err := serving.QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil || user != db.ServingRole {
			t.Fatalf("serving connection: user %q (%v)", user, err)
		}
		if _, err := serving.Exec(ctx, "CREATE TABLE u (v int)"); err == nil {
			t.Error("the serving role created a table")
		}
		if _, err := serving.Exec(ctx, "SELECT v FROM t"); err == nil {
			t.Error("the serving role reads the owner's table without a grant")
		}
	})
	admin, err := pgx.Connect(t.Context(), pgtest.AdminDSN())
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer admin.Close(t.Context())
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
		db.OwnerRole, db.ServingRole).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d of the test's roles left after it (%v)", n, err)
	}
}

// StartWith passes its settings to the server (durable: the commit below
// survives the crash). StartOnData starts a server on a copy of a crashed
// cluster's data directory (made by Command, in a directory from
// ServerDir), which recovers and has the data; a directory without one is
// refused.
func TestStartWithAndStartOnData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := t.TempDir()
	a, err := pgtest.StartWith(filepath.Join(root, "a"), pgtest.Options{Durable: true, Settings: []string{"work_mem=7MB"}})
	if err != nil {
		t.Fatalf("StartWith: %v", err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	conn, err := pgx.Connect(ctx, a.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var workMem string
	if err := conn.QueryRow(ctx, "SHOW work_mem").Scan(&workMem); err != nil || workMem != "7MB" {
		t.Errorf("work_mem = %q (%v), want the 7MB of the settings", workMem, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('here')"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	a.Crash()

	if _, err := pgtest.StartOnData(t.TempDir(), pgtest.Options{}); err == nil || !strings.Contains(err.Error(), "no data directory") {
		t.Errorf("StartOnData on an empty directory: %v, want no data directory", err)
	}
	bDir := filepath.Join(root, "b")
	if err := pgtest.ServerDir(bDir); err != nil {
		t.Fatal(err)
	}
	cp, err := pgtest.Command(ctx, "cp", "-a", filepath.Join(root, "a", "data"), filepath.Join(bDir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v\n%s", err, out)
	}
	_ = os.Remove(filepath.Join(bDir, "data", "postmaster.pid")) // the crashed server's
	b, err := pgtest.StartOnData(bDir, pgtest.Options{})
	if err != nil {
		t.Fatalf("StartOnData: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	conn, err = pgx.Connect(ctx, b.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "here" {
		t.Errorf("the copy's table: %q (%v), want here", v, err)
	}
	if log := b.Log(); !strings.Contains(log, "database system was interrupted") {
		t.Errorf("the copy did not recover from a crash; its log:\n%s", log)
	}
}
