package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// The Compose stack's backup, run for real against PostgreSQL: the role
// script of the db-roles one-shot (deploy/compose/scripts/db-roles.sh,
// run twice) makes spike_backup, and backup.sh dumps SPIKE's database as
// that role into a directory, keeping the BACKUP_KEEP newest dumps. The
// role reads everything and can write nothing; the dump restores into a
// fresh database where every secret, version, setting and policy reads
// back and the audit trail verifies. Only the connection differs from
// Compose: a local cluster without TLS (sslmode=disable), where Compose
// uses verify-full.
func TestComposeBackupAsReadOnlyRole(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"sh", "psql", "pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (deploy/local/check-deps.sh installs PostgreSQL's tools): %v", tool, err)
		}
	}
	// A cluster of its own: db-roles.sh creates the cluster-wide roles
	// spike_nexus and spike_backup, which other tests must not see.
	cl, err := pgtest.Start(filepath.Join(t.TempDir(), "cluster"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	db := cl.NewRoles(t, "spike_nexus")
	admin, err := pgconn.ParseConfig(db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	pgEnv := func(user string) []string {
		return []string{
			"PATH=" + os.Getenv("PATH"),
			"PGHOST=" + admin.Host, "PGPORT=" + strconv.Itoa(int(admin.Port)),
			"PGDATABASE=" + db.Database, "PGUSER=" + user, "PGSSLMODE=disable",
		}
	}

	// db-roles.sh as the Compose stack runs it, with bootstrap.sh's files
	// in a directory of the test and the cluster's superuser in the
	// place of the image's (spike).
	secrets := t.TempDir()
	for dir, content := range map[string]string{
		"postgres":  "unused: the cluster trusts local connections\n",
		"nexus-db":  "0123456789abcdef0123456789abcdef\n",
		"backup-db": "fedcba9876543210fedcba9876543210\n",
	} {
		if err := os.MkdirAll(filepath.Join(secrets, dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secrets, dir, "password"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rolesScript := filepath.Join("..", "deploy", "compose", "scripts", "db-roles.sh")
	for range 2 { // running it again changes nothing
		cmd := exec.CommandContext(t.Context(), "sh", rolesScript)
		cmd.Env = append(pgEnv(admin.User), "SECRETS_DIR="+secrets)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("db-roles.sh: %v\n%s", err, out)
		} else if !strings.Contains(string(out), "roles spike_nexus and spike_backup ready") || strings.Contains(string(out), "NOTICE") {
			t.Errorf("db-roles.sh printed %q", out)
		}
	}
	src := startStackOn(t, db, 1)
	src.initialise(t)
	adminEnv := src.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, adminEnv, "", "secret", "put", "apps/db", "pass=v1")
	mustSpike(t, adminEnv, "", "secret", "put", "apps/db", "pass=v2")
	mustSpike(t, adminEnv, "", "secret", "delete", "apps/db", "--versions", "1")
	mustSpike(t, adminEnv, "", "secret", "metadata", "put", "apps/db", "--max-versions", "5", "--custom", "owner=team-a")
	mustSpike(t, adminEnv, "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/**", "--perm", "read")
	views := [][]string{
		{"secret", "get", "apps/db"},
		{"secret", "metadata", "get", "apps/db"},
		{"secret", "list"},
		{"policy", "list"},
	}
	snapshot := func(env []string) map[string]string { return snapshotViews(t, env, views) }
	want := snapshot(adminEnv)

	// The role: a member of pg_read_all_data only, no attribute that
	// lifts it above that, read-only sessions by default.
	conn, err := pgx.Connect(t.Context(), cl.DSNAs(db.Database, "spike_backup"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var member []string
	var super, createRole, createDB, bypassRLS, replication bool
	if err := conn.QueryRow(t.Context(), `SELECT
		  coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '{}'),
		  r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication
		FROM pg_roles r WHERE r.rolname = 'spike_backup'`).Scan(&member, &super, &createRole, &createDB, &bypassRLS, &replication); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(member, []string{"pg_read_all_data"}) || super || createRole || createDB || bypassRLS || replication {
		t.Errorf("spike_backup: member of %v, superuser %v, createrole %v, createdb %v, bypassrls %v, replication %v; want pg_read_all_data only",
			member, super, createRole, createDB, bypassRLS, replication)
	}
	sqlState := func(sql string) string {
		_, err := conn.Exec(t.Context(), sql)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return pgErr.Code
		}
		return fmt.Sprint(err)
	}
	// 25006 read_only_sql_transaction; 42501 insufficient_privilege.
	for _, c := range []struct{ sql, want string }{
		{"DELETE FROM audit_log", "25006"},
		{"SET default_transaction_read_only = off", "<nil>"},
		{"DELETE FROM audit_log", "42501"},
		{"UPDATE secrets SET cas_required = true", "42501"},
		{"CREATE TABLE stolen (x int)", "42501"},
	} {
		if got := sqlState(c.sql); got != c.want {
			t.Errorf("as spike_backup, %s: %s, want %s", c.sql, got, c.want)
		}
	}

	// backup.sh, with three older dumps beside: the newest BACKUP_KEEP=2
	// stay (the one it writes and the newest older one), and a file that is
	// not a dump of its own is left alone.
	dir := t.TempDir()
	for _, name := range []string{"spike-20200101T000000Z.dump", "spike-20200102T000000Z.dump", "spike-20200103T000000Z.dump", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), "sh", filepath.Join("..", "deploy", "compose", "scripts", "backup.sh"))
	cmd.Env = append(pgEnv("spike_backup"), "BACKUP_DIR="+dir, "BACKUP_KEEP=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backup.sh: %v\n%s", err, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var dump string
	for _, e := range entries {
		names = append(names, e.Name())
		if strings.HasPrefix(e.Name(), "spike-2") && !strings.HasPrefix(e.Name(), "spike-2020") {
			dump = filepath.Join(dir, e.Name())
		}
	}
	if dump == "" || len(names) != 3 || !slices.Contains(names, "spike-20200103T000000Z.dump") || !slices.Contains(names, "notes.txt") {
		t.Fatalf("after backup.sh with BACKUP_KEEP=2, %s holds %v; want its new dump, spike-20200103T000000Z.dump and notes.txt\n%s", dir, names, out)
	}
	if fi, err := os.Stat(dump); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the dump's mode: %v, %v; want 0600", fi.Mode(), err)
	}

	// The dump restores, as docs/backup.md says, and reads back.
	restoredDB := cl.NewRoles(t, "")
	if out, err := exec.CommandContext(t.Context(), "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
		"--dbname="+restoredDB.Owner, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	dst := startStackOn(t, restoredDB, 1)
	restored := dst.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, restored, "correct horse battery\n", "operator", "unseal")
	mustSpike(t, restored, "correct horse battery\n", "login")
	if diff := cmp.Diff(want, snapshot(restored)); diff != "" {
		t.Errorf("after a restore of backup.sh's dump (-before +after):\n%s", diff)
	}
	var report struct {
		OK bool `json:"ok"`
	}
	out = []byte(mustSpike(t, restored, "", "audit", "verify", "-o", "json"))
	if err := json.Unmarshal(out, &report); err != nil || !report.OK {
		t.Errorf("audit verify after the restore printed %s (%v)", out, err)
	}
}
