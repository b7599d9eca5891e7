package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// The runbook's physical backup (docs/backup.md): a cluster archiving its
// WAL with deploy/postgres/archive-wal.sh, a base backup taken by a
// replication role that cannot read SPIKE's tables, writes after it, a
// named restore point, then writes and a rekey after that. The base backup
// restored into a fresh data directory and recovered to the restore point
// serves a fresh Nexus and Keeper: everything written before the point
// reads back as it was (through WAL replayed on top of the base backup),
// nothing written after it is there, the password of the point's time
// unseals and the later one does not, and the audit trail verifies.
func TestPointInTimeRecovery(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"pg_basebackup", "pg_verifybackup"} {
		if _, err := pgtest.Command(t.Context(), tool); err != nil {
			t.Fatalf("%s is missing (deploy/local/check-deps.sh installs PostgreSQL's tools): %v", tool, err)
		}
	}
	const (
		oldPassword  = "correct horse battery\n"
		newPassword  = "purple elephant umbrella quarry\n"
		restorePoint = "before-incident"
		backupRole   = "spike_backup"
	)
	root := t.TempDir()
	archive, scripts := filepath.Join(root, "archive"), filepath.Join(root, "bin")
	archiveWAL := filepath.Join(scripts, "archive-wal.sh")
	for _, dir := range []string{archive, scripts} {
		if err := pgtest.ServerDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("../deploy/postgres/archive-wal.sh")
	if err != nil {
		t.Fatal(err)
	}
	// 0755: the server's OS user runs it.
	if err := os.WriteFile(archiveWAL, script, 0o755); err != nil {
		t.Fatal(err)
	}
	cl, err := pgtest.StartWith(filepath.Join(root, "primary"), pgtest.Options{Settings: []string{
		"wal_level=replica",
		"archive_mode=on",
		"archive_command=" + archiveWAL + " %p %f " + archive,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	db := cl.NewRoles(t, "")
	// The backup role: replication (pg_basebackup) and the two WAL
	// functions, nothing else.
	sqlExec(t, cl.DSN("postgres"),
		"CREATE ROLE "+backupRole+" LOGIN REPLICATION",
		"GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO "+backupRole,
		"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO "+backupRole)
	// Granted in the database postgres (functions belong to a database);
	// restore points and WAL files are the whole cluster's.
	backupDSN := cl.DSNAs("postgres", backupRole)

	src := startStackOn(t, db, 1)
	src.initialise(t)
	if err := sqlExecErr(t, cl.DSNAs(db.Database, backupRole), "SELECT count(*) FROM secret_versions"); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the backup role read SPIKE's tables: %v; want permission denied", err)
	}
	admin := src.pilotEnv(t, 0, identity.Pilot(td))
	// In the base backup.
	for i := 1; i <= 3; i++ {
		mustSpike(t, admin, "", "secret", "put", "apps/db", fmt.Sprintf("pass=v%d", i))
	}
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=k1")
	mustSpike(t, admin, "", "secret", "delete", "apps/db", "--versions", "1")
	mustSpike(t, admin, "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/**", "--perm", "read")

	backup := filepath.Join(root, "backup")
	if err := pgtest.ServerDir(backup); err != nil {
		t.Fatal(err)
	}
	// --no-sync only because these clusters never sync either.
	runServerTool(t, "pg_basebackup", "--dbname="+backupDSN, "--pgdata="+backup,
		"--wal-method=stream", "--checkpoint=fast", "--no-sync")
	runServerTool(t, "pg_verifybackup", backup)

	// After the base backup, before the restore point: back through the
	// archived WAL only.
	mustSpike(t, admin, "", "secret", "put", "apps/db", "pass=v4")
	mustSpike(t, admin, "", "secret", "destroy", "apps/db", "--versions", "2")
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=k2")
	mustSpike(t, admin, "", "secret", "put", "apps/new", "n=1")
	mustSpike(t, admin, "", "secret", "metadata", "put", "apps/api", "--max-versions", "5", "--custom", "owner=team-a")
	mustSpike(t, admin, "", "policy", "put", "ops", "--spiffe-id", "spiffe://spike.local/app/ops", "--path", "ops/**", "--perm", "read")
	views := [][]string{
		{"secret", "get", "apps/db"},
		{"secret", "get", "apps/db", "--version", "3"},
		{"secret", "get", "apps/api", "--version", "1"},
		{"secret", "get", "apps/api"},
		{"secret", "get", "apps/new"},
		{"secret", "metadata", "get", "apps/db"},
		{"secret", "metadata", "get", "apps/api"},
		{"secret", "list"},
		{"policy", "list"},
	}
	snapshot := func(env []string) map[string]string { return snapshotViews(t, env, views) }
	want := snapshot(admin)
	sqlExec(t, backupDSN, "SELECT pg_create_restore_point('"+restorePoint+"')")

	// After the restore point: acknowledged, and absent after recovery.
	mustSpike(t, admin, "", "secret", "put", "apps/db", "pass=v5")
	mustSpike(t, admin, "", "secret", "put", "apps/late", "l=1")
	mustSpike(t, admin, "", "secret", "metadata", "put", "apps/api", "--custom", "owner=team-b")
	mustSpike(t, admin, "", "policy", "delete", "web")
	mustAfterBackoff(t, admin, oldPassword+newPassword, "operator", "rekey")
	mustSpike(t, admin, "", "secret", "put", "apps/late", "l=2")
	waitArchived(t, cl, backupDSN)

	// Restore: a copy of the base backup, recovered from the archive to
	// the restore point, then promoted.
	restoredDir := filepath.Join(root, "restored")
	if err := pgtest.ServerDir(restoredDir); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(restoredDir, "data")
	runServerTool(t, "cp", "-a", backup, data)
	runServerTool(t, "touch", filepath.Join(data, "recovery.signal"))
	restored, err := pgtest.StartOnData(restoredDir, pgtest.Options{Settings: []string{
		"restore_command=cp " + archive + "/%f %p",
		"recovery_target_name=" + restorePoint,
		"recovery_target_action=promote",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restored.Stop() })
	waitPromoted(t, restored)
	if log := restored.Log(); !strings.Contains(log, `recovery stopping at restore point "`+restorePoint+`"`) {
		t.Errorf("the restored server did not say it stopped at the restore point; its log:\n%s", log)
	}

	// A fresh stack on it, as after any restore: migrate (in
	// startStackOn), a new Keeper, the password of the restore point's
	// time.
	dst := startStackOn(t, db.On(restored), 1)
	after := dst.pilotEnv(t, 0, identity.Pilot(td))
	wantRefused(t, "unseal with the password set after the restore point",
		spike(t, after, newPassword, "operator", "unseal"), "wrong password")
	mustAfterBackoff(t, after, oldPassword, "operator", "unseal")
	mustAfterBackoff(t, after, oldPassword, "login")
	got := snapshot(after)
	for _, v := range views {
		if k := fmt.Sprint(v); got[k] != want[k] {
			t.Errorf("%s after recovery:\n%s\nwant:\n%s", k, got[k], want[k])
		}
	}
	if s := getJSON(t, after, "apps/db"); s.Version != 4 || s.Data["pass"] != "v4" {
		t.Errorf("apps/db after recovery: version %d %v; want version 4, written after the base backup", s.Version, s.Data)
	}
	for _, absent := range []struct {
		args []string
		want string
	}{
		{[]string{"apps/late"}, "secret apps/late not found"},
		{[]string{"apps/db", "--version", "5"}, "version 5 of apps/db does not exist: the newest is 4"},
	} {
		r := spike(t, after, "", append([]string{"secret", "get"}, absent.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, absent.want) {
			t.Errorf("secret get %v after recovery: exit %d, stdout %q, stderr %q; want 2 and %q",
				absent.args, r.code, r.stdout, r.stderr, absent.want)
		}
	}
	var report struct {
		OK bool `json:"ok"`
	}
	out := mustSpike(t, after, "", "audit", "verify", "-o", "json")
	if err := json.Unmarshal([]byte(out), &report); err != nil || !report.OK {
		t.Errorf("audit verify after recovery printed %s (%v)", out, err)
	}

	t.Run("a deployment that saw the rekey refuses the recovered keyring until restarted", func(t *testing.T) {
		// The runbook's warning: the old Keeper, still running, is given
		// the recovered database by a Nexus of the old deployment.
		src.nexus[0].Stop()
		stale := &stack{ca: src.ca, adminTokenFile: filepath.Join(t.TempDir(), "admin-token")}
		stale.startNexus(t, svidEnv(t, src.ca, identity.Nexus(td)), db.On(restored).Serving, []string{"https://" + src.keeperAddr})
		token, err := os.ReadFile(dst.adminTokenFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stale.adminTokenFile, token, 0o600); err != nil {
			t.Fatal(err)
		}
		old := stale.pilotEnv(t, 0, identity.Pilot(td))
		// It still holds the keyring (the same one, rekeyed): the
		// recovered database is served without any credentials...
		waitStatus(t, old, func(s statusJSON) bool { return !s.Sealed })
		if s := getJSON(t, old, "apps/db"); s.Version != 4 {
			t.Errorf("apps/db through the old Keeper: version %d, want 4", s.Version)
		}
		// ...and the credentials of the restore point's time are refused:
		// the stored keyring is older than the one the Keeper holds, which
		// Nexus learnt from it.
		wantRefused(t, "login with the old password through the old Keeper",
			spike(t, old, oldPassword, "login"), "the stored root keyring is at epoch 1, older than epoch 2 committed before: it was rolled back in the database")
		// Restarted, both have forgotten it.
		src.keeper.Stop()
		stale.nexus[0].Stop()
		src.keeper.Restart()
		src.keeper.WaitListening(src.keeperAddr)
		stale.nexus[0].Restart()
		stale.nexus[0].WaitListening(stale.nexusAddrs[0])
		waitStatus(t, old, func(s statusJSON) bool { return s.Sealed && s.KeeperReachable })
		mustAfterBackoff(t, old, oldPassword, "operator", "unseal")
		if s := getJSON(t, old, "apps/db"); s.Version != 4 || s.Data["pass"] != "v4" {
			t.Errorf("apps/db through the restarted Keeper: version %d %v, want version 4", s.Version, s.Data)
		}
	})
}

// runServerTool runs a program as the OS user the clusters run as (see
// pgtest.Command) and fails the test if it fails.
func runServerTool(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd, err := pgtest.Command(t.Context(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// sqlExec runs statements on dsn, failing the test on an error.
func sqlExec(t *testing.T, dsn string, statements ...string) {
	t.Helper()
	if err := sqlExecErr(t, dsn, statements...); err != nil {
		t.Fatal(err)
	}
}

// sqlExecErr runs statements on dsn and returns the first error.
func sqlExecErr(t *testing.T, dsn string, statements ...string) error {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(t.Context())
	for _, sql := range statements {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// waitArchived closes the current WAL file (as the backup role, on dsn)
// and waits until cl has archived it, so that the archive holds every
// write made so far.
func waitArchived(t *testing.T, cl *pgtest.Cluster, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var segment string
	if err := conn.QueryRow(t.Context(), "SELECT pg_walfile_name(pg_switch_wal())").Scan(&segment); err != nil {
		t.Fatal(err)
	}
	var last, failed string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err := conn.QueryRow(t.Context(),
			"SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&last, &failed)
		if err != nil {
			t.Fatal(err)
		}
		// WAL file names of one timeline sort in WAL order.
		if last >= segment {
			return
		}
	}
	t.Fatalf("WAL file %s was not archived (last archived %q, last failed %q); server log:\n%s", segment, last, failed, cl.Log())
}

// waitPromoted waits until the recovering server cl has reached its target
// and left recovery.
func waitPromoted(t *testing.T, cl *pgtest.Cluster) {
	t.Helper()
	var lastErr error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		conn, err := pgx.Connect(t.Context(), cl.DSN("postgres"))
		if err != nil {
			lastErr = err
			continue
		}
		var inRecovery bool
		err = conn.QueryRow(t.Context(), "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		_ = conn.Close(t.Context())
		switch {
		case err != nil:
			lastErr = err
		case !inRecovery:
			return
		default:
			lastErr = errors.New("still in recovery")
		}
	}
	t.Fatalf("the restored server did not finish recovery: %v; its log:\n%s", lastErr, cl.Log())
}
