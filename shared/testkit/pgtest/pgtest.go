// Package pgtest gives tests a real PostgreSQL 15: one throwaway cluster per
// test process (started by Main) and a fresh database per test (NewDatabase),
// so tests that touch the database can run in parallel without sharing state.
//
// The server binaries (initdb, postgres) must be installed; when they are
// missing the tests fail with a message saying how to install them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// cluster is the server started by Main for this test process.
var cluster *Cluster

// Main starts a throwaway cluster, runs the tests and stops the cluster, then
// exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run is Main without the exit, so the deferred cleanup runs.
func run(m *testing.M) int {
	removeStale()
	lock, err := os.CreateTemp("", lockPrefix+"*"+lockSuffix)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: pgtest: %v\n", err)
		return 1
	}
	defer func() {
		_ = os.Remove(lock.Name())
		_ = lock.Close()
	}()
	// The lock lives as long as this process, however it ends; removeStale
	// in a later run uses it to tell abandoned clusters from live ones.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: pgtest: lock %s: %v\n", lock.Name(), err)
		return 1
	}
	c, err := Start(strings.TrimSuffix(lock.Name(), lockSuffix))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	cluster = c
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}()
	return m.Run()
}

// Main's cluster directories are named <tmp>/pgtest-N, each next to a lock
// file <tmp>/pgtest-N.lock that its process holds (flock) while it runs.
const (
	lockPrefix = "pgtest-"
	lockSuffix = ".lock"
)

// removeStale deletes the cluster directories of earlier test processes that
// died without cleaning up (a test timeout or a kill ends the process without
// running deferred calls; the server itself dies with its parent). A lock
// file nobody holds any more marks such a directory; fresh lock files are
// skipped, as their process may be about to take the lock.
func removeStale() {
	locks, _ := filepath.Glob(filepath.Join(os.TempDir(), lockPrefix+"*"+lockSuffix))
	for _, name := range locks {
		if fi, err := os.Stat(name); err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(strings.TrimSuffix(name, lockSuffix))
			_ = os.Remove(name)
		}
		_ = f.Close()
	}
}

// AdminDSN returns the DSN of the cluster's postgres database as superuser.
// It panics when Main has not started a cluster.
func AdminDSN() string {
	if cluster == nil {
		panic("pgtest: no cluster: call pgtest.Main(m) from TestMain")
	}
	return cluster.DSN("postgres")
}

// NewDatabase creates an empty database on the cluster started by Main and
// returns its DSN. The database is dropped, closing any connections still
// open to it, when the test finishes.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if cluster == nil {
		t.Fatal("pgtest: no cluster: call pgtest.Main(m) from TestMain")
	}
	name := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return cluster.DSN(name)
}

// Roles is a fresh database set up as SPIKE runs in production: owned by
// a role of its own, which runs the migrations, beside a login role that
// Nexus serves as and that has no privileges of its own until the
// migrations' grants give it some.
type Roles struct {
	// Admin connects as the superuser, for tests that play the DBA or an
	// attacker with full access to storage.
	Admin string
	// Owner connects as OwnerRole, which owns the database (and so its
	// schema public).
	Owner     string
	OwnerRole string
	// Serving connects as ServingRole.
	Serving     string
	ServingRole string
	// Database is the database's name.
	Database string
}

// On returns r on the server of cluster c: the same database and roles,
// there. Roles and databases belong to a cluster: this is for a cluster
// that has them too, such as one restored from a physical backup of r's.
func (r Roles) On(c *Cluster) Roles {
	r.Admin = c.DSN(r.Database)
	r.Owner = c.DSNAs(r.Database, r.OwnerRole)
	r.Serving = c.DSNAs(r.Database, r.ServingRole)
	return r
}

// NewRoles creates a fresh database owned by a new role, and a new login
// role for Nexus to serve as: named serving, or a random name when serving
// is "". The database and both roles are dropped when the test finishes.
func NewRoles(t testing.TB, serving string) Roles {
	t.Helper()
	if cluster == nil {
		t.Fatal("pgtest: no cluster: call pgtest.Main(m) from TestMain")
	}
	return cluster.NewRoles(t, serving)
}

// NewRoles is the package's NewRoles on cluster c.
func (c *Cluster) NewRoles(t testing.TB, serving string) Roles {
	t.Helper()
	return newRoles(t, serving, c.DSNAs, c.adminExec)
}

// newRoles is NewRoles on the server that dsnAs (the DSN of a database as
// a role) reaches, running statements on its postgres database with
// adminExec.
func newRoles(t testing.TB, serving string, dsnAs func(db, role string) string,
	adminExec func(ctx context.Context, sql string) error) Roles {
	t.Helper()
	suffix := randomHex(6)
	r := Roles{OwnerRole: "spike_owner_" + suffix, ServingRole: serving}
	if r.ServingRole == "" {
		r.ServingRole = "spike_nexus_" + suffix
	}
	name := "test_" + randomHex(8)
	owner, nexus := pgx.Identifier{r.OwnerRole}.Sanitize(), pgx.Identifier{r.ServingRole}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		"CREATE ROLE " + owner + " LOGIN",
		"CREATE ROLE " + nexus + " LOGIN",
	} {
		if err := adminExec(ctx, sql); err != nil {
			t.Fatalf("pgtest: %s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP ROLE "+nexus+", "+owner); err != nil {
			t.Errorf("pgtest: drop roles: %v", err)
		}
	})
	if err := adminExec(ctx, "CREATE DATABASE "+name+" OWNER "+owner); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	r.Database = name
	r.Admin = dsnAs(name, "postgres")
	r.Owner = dsnAs(name, r.OwnerRole)
	r.Serving = dsnAs(name, r.ServingRole)
	return r
}

// adminExec runs one statement on the postgres database. Database names
// cannot be query parameters; callers pass only names built by this package.
func adminExec(ctx context.Context, sql string) error {
	return cluster.adminExec(ctx, sql)
}

func (c *Cluster) adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
