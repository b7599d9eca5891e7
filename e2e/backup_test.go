package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// put is one acknowledged write of the backup drill's storm.
type put struct {
	path        string
	n           int
	version     int64
	sent, acked time.Time
}

// putStorm writes, from each worker, versions of a secret of its own until
// stopped, and records when each write was sent and acknowledged.
type putStorm struct {
	mu       sync.Mutex
	puts     []put
	failures []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startPutStorm(ctx context.Context, secrets nexusv1connect.SecretServiceClient, workers int) *putStorm {
	s := &putStorm{stop: make(chan struct{})}
	for w := range workers {
		s.wg.Go(func() {
			path := fmt.Sprintf("storm/w%d", w)
			for n := 0; ; n++ {
				select {
				case <-s.stop:
					return
				default:
				}
				sent := time.Now()
				resp, err := secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"n": fmt.Sprint(n)}}))
				acked := time.Now()
				s.mu.Lock()
				if err != nil {
					s.failures = append(s.failures, fmt.Sprintf("put %s n=%d: %v", path, n, err))
				} else {
					s.puts = append(s.puts, put{path: path, n: n, version: resp.Msg.GetVersion(), sent: sent, acked: acked})
				}
				s.mu.Unlock()
			}
		})
	}
	return s
}

func (s *putStorm) finish() ([]put, []string) {
	close(s.stop)
	s.wg.Wait()
	return s.puts, s.failures
}

// backupViews are what spike shows of the populated state, as JSON.
var backupViews = [][]string{
	{"secret", "get", "apps/db"},
	{"secret", "get", "apps/db", "--version", "3"},
	{"secret", "get", "apps/api", "--version", "1"},
	{"secret", "get", "apps/api"},
	{"secret", "metadata", "get", "apps/db"},
	{"secret", "metadata", "get", "apps/api"},
	{"policy", "list"},
	{"policy", "get", "web"},
}

func viewsOf(t *testing.T, env []string) map[string]string {
	t.Helper()
	return snapshotViews(t, env, backupViews)
}

// populate writes what a restore must bring back: versions, a deleted and
// a destroyed one, settings, custom metadata, policies, a second admin
// login (a token), and the audit records of all of it.
func populate(t *testing.T, admin []string) {
	t.Helper()
	for i := 1; i <= 4; i++ {
		mustSpike(t, admin, "", "secret", "put", "apps/db", fmt.Sprintf("pass=plaintext-db-%d", i))
	}
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=plaintext-api-1")
	mustSpike(t, admin, "", "secret", "put", "apps/api", "key=plaintext-api-2")
	mustSpike(t, admin, "", "secret", "delete", "apps/db", "--versions", "1")
	mustSpike(t, admin, "", "secret", "destroy", "apps/db", "--versions", "2")
	mustSpike(t, admin, "", "secret", "metadata", "put", "apps/api", "--max-versions", "5", "--custom", "owner=plaintext-team")
	mustSpike(t, admin, "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/**", "--perm", "read")
	mustSpike(t, admin, "", "policy", "put", "ops", "--spiffe-id", "spiffe://spike.local/app/ops", "--path", "ops/**", "--perm", "read,write")
	mustSpike(t, admin, "", "policy", "delete", "ops")
	mustSpike(t, admin, "correct horse battery\n", "login")
}

// tableCounts counts the rows of SPIKE's tables in the database at dsn.
func tableCounts(t *testing.T, dsn string) map[string]int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	out := map[string]int64{}
	for _, q := range []struct{ name, sql string }{
		{"root_keyrings", "SELECT count(*) FROM root_keyrings"},
		{"data_keys", "SELECT count(*) FROM data_keys"},
		{"secrets", "SELECT count(*) FROM secrets"},
		{"secret_versions", "SELECT count(*) FROM secret_versions"},
		{"policies", "SELECT count(*) FROM policies"},
		{"admin_tokens", "SELECT count(*) FROM admin_tokens"},
		{"audit_keys", "SELECT count(*) FROM audit_keys"},
		{"audit_checkpoints", "SELECT count(*) FROM audit_checkpoints"},
		{"authenticated audit records", "SELECT count(*) FROM audit_log WHERE lane >= 0"},
	} {
		var n int64
		if err := conn.QueryRow(t.Context(), q.sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
		out[q.name] = n
	}
	return out
}

// The restore drill of issue 13: populate, back up while a write storm
// runs, restore into a fresh database with new Keepers and Nexus, unseal
// with the password of the backup's time. Everything populated reads back
// the same, the audit trail verifies, every write acknowledged before the
// backup began is there, every write sent after it ended is not, and each
// storm secret present is complete (its latest version holds the value
// written as that version). Admin tokens of before the backup do not work.
func TestBackupRestoreDrill(t *testing.T) {
	t.Parallel()
	src := startStack(t, 1)
	src.initialise(t)
	admin := src.pilotEnv(t, 0, identity.Pilot(td))
	populate(t, admin)
	want := viewsOf(t, admin)
	oldToken, err := os.ReadFile(src.adminTokenFile)
	if err != nil {
		t.Fatal(err)
	}

	secrets, _ := src.noRetryClients(t, 0)
	st := startPutStorm(t.Context(), secrets, 4)
	time.Sleep(time.Second)
	file := filepath.Join(t.TempDir(), "spike.backup")
	began := time.Now()
	out := mustSpike(t, admin, "", "operator", "backup", "--file", file)
	ended := time.Now()
	if !strings.Contains(out, "Backup written to "+file) {
		t.Errorf("backup printed %q", out)
	}
	time.Sleep(time.Second)
	puts, failures := st.finish()
	if len(failures) > 0 {
		t.Errorf("writes failed during the backup:\n%s", strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	mustSpike(t, admin, "", "secret", "put", "late/after", "k=v")
	var before, during, after int
	for _, p := range puts {
		switch {
		case p.acked.Before(began):
			before++
		case p.sent.After(ended):
			after++
		default:
			during++
		}
	}
	t.Logf("storm: %d writes acknowledged before the backup began, %d during it, %d sent after it ended", before, during, after)
	if before == 0 || after == 0 {
		t.Fatalf("the storm must write before and after the backup: %d before, %d after", before, after)
	}
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", info, err)
	}
	if got := mustSpike(t, admin, "", "operator", "backup", "verify", file); !strings.Contains(got, "Backup verified") {
		t.Errorf("verify printed %q", got)
	}
	// The backup holds the values sealed: no value written is in it in the clear.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"plaintext-"} {
		if strings.Contains(string(raw), plain) {
			t.Errorf("the backup file holds %q in the clear", plain)
		}
	}

	// A fresh database, new Keepers and a new Nexus.
	db := pgtest.NewRoles(t, "")
	dst := startStackOn(t, db, 1)
	restored := dst.pilotEnv(t, 0, identity.Pilot(td))
	// Wrong credentials are refused, and leave the database empty.
	if r := spike(t, restored, "wrong horse battery\n", "operator", "restore", file); r.code == 0 || !strings.Contains(r.stderr, "password") {
		t.Errorf("restore with a wrong password: exit %d, %s", r.code, r.stderr)
	}
	if n := tableCounts(t, db.Admin); n["root_keyrings"] != 0 || n["secrets"] != 0 {
		t.Fatalf("a refused restore left rows: %v", n)
	}
	time.Sleep(1100 * time.Millisecond) // the login backoff of the wrong password
	out = mustSpike(t, restored, "correct horse battery\n", "operator", "restore", file)
	if !strings.Contains(out, "Backup restored. SPIKE is sealed") {
		t.Errorf("restore printed %q", out)
	}
	waitStatus(t, restored, func(s statusJSON) bool { return s.Initialized && s.Sealed })
	if r := spike(t, restored, "correct horse battery\n", "operator", "restore", file); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("a second restore: exit %d, %s; want refused, the database is not empty", r.code, r.stderr)
	}
	// The admin token of before the backup is not valid after it.
	if err := os.WriteFile(dst.adminTokenFile, oldToken, 0o600); err != nil {
		t.Fatal(err)
	}
	mustSpike(t, restored, "correct horse battery\n", "operator", "unseal")
	if r := spike(t, restored, "", "secret", "get", "apps/db"); r.code == 0 {
		t.Errorf("the admin token of before the backup still works after the restore: %s", r.stdout)
	}
	mustSpike(t, restored, "correct horse battery\n", "login")
	got := viewsOf(t, restored)
	for _, v := range backupViews {
		if k := fmt.Sprint(v); got[k] != want[k] {
			t.Errorf("%s after restore:\n%s\nwant:\n%s", k, got[k], want[k])
		}
	}
	if r := spike(t, restored, "", "secret", "get", "late/after"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("a secret written after the backup: exit %d, %s%s; want not found", r.code, r.stdout, r.stderr)
	}
	var report struct {
		OK bool `json:"ok"`
	}
	if out := mustSpike(t, restored, "", "audit", "verify", "-o", "json"); json.Unmarshal([]byte(out), &report) != nil || !report.OK {
		t.Errorf("audit verify after restore printed %s", out)
	}

	// The storm's secrets: as at one moment between the backup's start and
	// end, each complete.
	dst.adminToken = strings.TrimSpace(readFile(t, dst.adminTokenFile))
	rs, _ := dst.noRetryClients(t, 0)
	byVersion := map[string]map[int64]int{}
	for _, p := range puts {
		if byVersion[p.path] == nil {
			byVersion[p.path] = map[int64]int{}
		}
		byVersion[p.path][p.version] = p.n
	}
	current := map[string]int64{}
	for path, versions := range byVersion {
		resp, err := rs.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			continue
		}
		if err != nil {
			t.Errorf("get %s after restore: %v", path, err)
			continue
		}
		v := resp.Msg.GetSecret().GetVersion()
		current[path] = v
		if n, ok := versions[v]; !ok || resp.Msg.GetSecret().GetData()["n"] != fmt.Sprint(n) {
			t.Errorf("%s version %d after restore holds %v, want n=%d as written", path, v, resp.Msg.GetSecret().GetData(), n)
		}
	}
	for _, p := range puts {
		switch {
		case p.acked.Before(began) && current[p.path] < p.version:
			t.Errorf("%s version %d was acknowledged before the backup began, but the restore holds version %d", p.path, p.version, current[p.path])
		case p.sent.After(ended) && current[p.path] >= p.version:
			t.Errorf("%s version %d was written after the backup ended, but the restore holds version %d", p.path, p.version, current[p.path])
		}
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A backup edited in any byte is refused by verify and by restore, and a
// refused restore leaves the database empty (a later restore of the
// intact file into it works). Bytes are flipped in the magic line, the
// header, rows of several tables, the manifest and its MAC.
func TestBackupTamperRefused(t *testing.T) {
	t.Parallel()
	src := startStack(t, 1)
	src.initialise(t)
	admin := src.pilotEnv(t, 0, identity.Pilot(td))
	populate(t, admin)
	dir := t.TempDir()
	file := filepath.Join(dir, "spike.backup")
	mustSpike(t, admin, "", "operator", "backup", "--file", file)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	size := len(raw)
	positions := map[string]int{
		"magic":           3,
		"header length":   len("SPIKE-BACKUP 1\n"),
		"header":          len("SPIKE-BACKUP 1\n") + 20,
		"header tables":   len("SPIKE-BACKUP 1\n") + 200,
		"last MAC byte":   size - 1,
		"MAC":             size - 20,
		"manifest":        size - 60,
		"manifest tables": size - 200,
	}
	for i := 1; i <= 8; i++ {
		positions[fmt.Sprintf("row data %d of 9", i)] = 400 + (size-700)*i/9
	}
	db := pgtest.NewRoles(t, "")
	dst := startStackOn(t, db, 1)
	restored := dst.pilotEnv(t, 0, identity.Pilot(td))
	empty := tableCounts(t, db.Admin)
	for name, at := range positions {
		edited := append([]byte(nil), raw...)
		edited[at] ^= 0x20
		bad := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".backup")
		if err := os.WriteFile(bad, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := spike(t, admin, "", "operator", "backup", "verify", bad); r.code == 0 || !strings.Contains(r.stderr, "refused") {
			t.Errorf("%s (byte %d): verify exit %d, %q; want refused", name, at, r.code, r.stderr)
		}
		r := spike(t, restored, "correct horse battery\n", "operator", "restore", bad)
		if r.code == 0 || !strings.Contains(r.stderr, "refused") {
			t.Errorf("%s (byte %d): restore exit %d, %q; want refused", name, at, r.code, r.stderr)
		}
		t.Logf("%s (byte %d of %d): restore said %s", name, at, size, strings.TrimSpace(r.stderr))
		if got := tableCounts(t, db.Admin); fmt.Sprint(got) != fmt.Sprint(empty) {
			t.Fatalf("%s: a refused restore changed the database: %v, was %v", name, got, empty)
		}
	}
	// Cut short, and extended: refused too.
	for name, edited := range map[string][]byte{"cut": raw[:size-1], "extended": append(append([]byte(nil), raw...), 0)} {
		bad := filepath.Join(dir, name+".backup")
		if err := os.WriteFile(bad, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := spike(t, admin, "", "operator", "backup", "verify", bad); r.code == 0 {
			t.Errorf("%s: verify accepted it", name)
		}
	}
	if out := mustSpike(t, restored, "correct horse battery\n", "operator", "restore", file); !strings.Contains(out, "Backup restored") {
		t.Errorf("restore of the intact file printed %q", out)
	}
	if n := tableCounts(t, db.Admin); n["secrets"] != 2 || n["admin_tokens"] != 0 || n["root_keyrings"] != 1 {
		t.Errorf("after the restore: %v; want 2 secrets, a keyring and no admin token", n)
	}
	if r := spike(t, dst.pilotEnv(t, 0, identity.Pilot(td)), "", "operator", "backup", "--file", filepath.Join(dir, "x")); r.code == 0 {
		t.Errorf("a backup without an admin token succeeded")
	}

	// A rotation destroys the root key version that wraps the backup's
	// audit key: verify says so (restore does not need the running
	// keyring: it opens the backup's own), and a new backup verifies.
	mustSpike(t, admin, "", "operator", "rotate")
	if r := spike(t, admin, "", "operator", "backup", "verify", file); r.code == 0 || !strings.Contains(r.stderr, "a rotation since the backup destroyed that version") {
		t.Errorf("verify of a backup from before a rotation: exit %d, %q", r.code, r.stderr)
	}
	again := filepath.Join(dir, "after-rotation.backup")
	mustSpike(t, admin, "", "operator", "backup", "--file", again)
	mustSpike(t, admin, "", "operator", "backup", "verify", again)
}
