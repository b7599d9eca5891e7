package e2e_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// The runbook's logical backup (docs/backup.md): pg_dump of SPIKE's
// database, pg_restore into a fresh cluster, spike-nexus migrate there to
// grant the serving role, a new Keeper unsealed with the password. Every
// secret, version state, setting and policy reads back as it was, and the
// audit trail verifies.
func TestPgDumpRestoresEverything(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (deploy/local/check-deps.sh installs PostgreSQL's tools): %v", tool, err)
		}
	}
	src := startStack(t, 1)
	src.initialise(t)
	admin := src.pilotEnv(t, 0, identity.Pilot(td))
	for i := 1; i <= 3; i++ {
		mustSpike(t, admin, "", "secret", "put", "apps/db", fmt.Sprintf("pass=v%d", i))
	}
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=k1")
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=k2")
	mustSpike(t, admin, "", "secret", "delete", "apps/db", "--versions", "1")
	mustSpike(t, admin, "", "secret", "destroy", "apps/db", "--versions", "2")
	mustSpike(t, admin, "", "secret", "metadata", "put", "apps/api", "--max-versions", "5", "--custom", "owner=team-a")
	mustSpike(t, admin, "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/**", "--perm", "read")

	// What must come back: everything spike shows, as JSON.
	views := [][]string{
		{"secret", "get", "apps/db"},
		{"secret", "get", "apps/api", "--version", "1"},
		{"secret", "get", "apps/api"},
		{"secret", "metadata", "get", "apps/db"},
		{"secret", "metadata", "get", "apps/api"},
		{"secret", "list"},
		{"policy", "list"},
	}
	snapshot := func(env []string) map[string]string { return snapshotViews(t, env, views) }
	want := snapshot(admin)

	dump := filepath.Join(t.TempDir(), "spike.dump")
	if out, err := exec.CommandContext(t.Context(), "pg_dump", "--format=custom", "--file="+dump, "--dbname="+src.dsn).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}

	cl, err := pgtest.Start(filepath.Join(t.TempDir(), "restored"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	db := cl.NewRoles(t, "")
	// As the new database's owner, without the old cluster's owners and
	// grants (roles are per cluster); migrate grants the serving role.
	if out, err := exec.CommandContext(t.Context(), "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
		"--dbname="+db.Owner, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	dst := startStackOn(t, db, 1)
	restored := dst.pilotEnv(t, 0, identity.Pilot(td))
	// A new Keeper: SPIKE is sealed until the password of the backup's
	// time unseals it; the old admin token is in the other stack's file.
	mustSpike(t, restored, "correct horse battery\n", "operator", "unseal")
	mustSpike(t, restored, "correct horse battery\n", "login")
	got := snapshot(restored)
	for _, v := range views {
		k := fmt.Sprint(v)
		if got[k] != want[k] {
			t.Errorf("%s after restore:\n%s\nwant:\n%s", k, got[k], want[k])
		}
	}
	var report struct {
		OK bool `json:"ok"`
	}
	out := mustSpike(t, restored, "", "audit", "verify", "-o", "json")
	if err := json.Unmarshal([]byte(out), &report); err != nil || !report.OK {
		t.Errorf("audit verify after restore printed %s (%v)", out, err)
	}
}

// snapshotViews runs each of views (spike arguments) with -o json as env,
// keyed by the arguments: what a restored copy must show the same.
func snapshotViews(t *testing.T, env []string, views [][]string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, v := range views {
		got[fmt.Sprint(v)] = mustSpike(t, env, "", append(v, "-o", "json")...)
	}
	return got
}
