package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// An existing stack keeps everything across the upgrade to sealed heads:
// testdata/schema5.sql is a database at schema version 5 written by the
// binaries of the release before (see testdata/make-schema5.sh). The
// current binaries migrate it in place; after an unseal every secret,
// version state, setting and policy reads as written, the old release's
// admin token authenticates (accepted, or refused only as expired), the audit
// trail verifies, and writes seal heads for the old secrets.
func TestUpgradeFromSchema5(t *testing.T) {
	t.Parallel()
	// Loaded as the owner: before roles were split, Nexus's one role
	// owned the schema; it becomes the owner that migrates.
	db := pgtest.NewRoles(t, "")
	if out, err := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.Owner, "-f", "testdata/schema5.sql").CombinedOutput(); err != nil {
		t.Fatalf("load testdata/schema5.sql: %v\n%s", err, out)
	}
	s := startStackOn(t, db, 1)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "upgrade fixture password\n", "operator", "unseal")
	useFixtureToken(t, s, admin, "upgrade fixture password\n")

	// Values and version states as they were.
	if got := getJSON(t, admin, "apps/a"); got.Version != 4 || got.Data["pass"] != "a-v4" || got.Data["user"] != "alice" {
		t.Errorf("apps/a = %+v, want version 4 with pass a-v4", got)
	}
	if got := mustSpike(t, admin, "", "secret", "get", "apps/a", "--version", "3", "--field", "pass"); strings.TrimSpace(got) != "a-v3" {
		t.Errorf("apps/a version 3 = %q", got)
	}
	for v, want := range map[string]string{"1": "destroyed", "2": "deleted"} {
		r := spike(t, admin, "", "secret", "get", "apps/a", "--version", v)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("apps/a version %s: exit %d, %q; want it %s", v, r.code, r.stderr, want)
		}
	}
	var md struct {
		CurrentVersion int64             `json:"current_version"`
		OldestVersion  int64             `json:"oldest_version"`
		CASRequired    bool              `json:"cas_required"`
		MaxVersions    int32             `json:"max_versions"`
		Custom         map[string]string `json:"custom_metadata"`
		Versions       []struct {
			Version int64  `json:"version"`
			State   string `json:"state"`
		} `json:"versions"`
	}
	metadata := func(path string) {
		t.Helper()
		out := mustSpike(t, admin, "", "secret", "metadata", "get", path, "-o", "json")
		md.Custom, md.Versions = nil, nil
		if err := json.Unmarshal([]byte(out), &md); err != nil {
			t.Fatalf("metadata get -o json printed %q: %v", out, err)
		}
	}
	metadata("apps/a")
	if md.Custom["owner"] != "team-a" || md.Custom["tier"] != "gold" || len(md.Versions) != 4 {
		t.Errorf("apps/a metadata = %+v", md)
	}
	metadata("apps/b")
	if !md.CASRequired || md.MaxVersions != 2 || md.CurrentVersion != 4 || md.OldestVersion != 3 {
		t.Errorf("apps/b metadata = %+v, want cas required, max 2, versions 3 to 4", md)
	}
	if got := mustSpike(t, admin, "", "secret", "list", "apps/", "-o", "json"); !strings.Contains(got, "apps/a") || !strings.Contains(got, "apps/b") || strings.Contains(got, "apps/c") {
		t.Errorf("list apps/ = %s, want apps/a and apps/b only", got)
	}

	// Settings still decide: check-and-set is still required on apps/b.
	if r := spike(t, admin, "", "secret", "put", "apps/b", "key=no-cas"); r.code == 0 || !strings.Contains(r.stderr, "check-and-set is required") {
		t.Errorf("put without cas on apps/b: exit %d, %q", r.code, r.stderr)
	}
	// Writes seal heads for the old secrets; what they carry stays.
	mustSpike(t, admin, "", "secret", "put", "apps/b", "--cas", "4", "key=b-v5")
	mustSpike(t, admin, "", "secret", "metadata", "put", "apps/a", "--max-versions", "10")
	conn, err := pgx.Connect(t.Context(), s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var unsealed int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM secrets WHERE path IN ('apps/a', 'apps/b') AND head IS NULL`).Scan(&unsealed); err != nil {
		t.Fatal(err)
	}
	if unsealed != 0 {
		t.Errorf("%d of the written secrets have no sealed head", unsealed)
	}
	metadata("apps/b")
	if !md.CASRequired || md.CurrentVersion != 5 || md.OldestVersion != 4 || len(md.Versions) != 2 {
		t.Errorf("apps/b after a put = %+v, want versions 4 to 5, cas required", md)
	}
	if got := getJSON(t, admin, "apps/b"); got.Version != 5 || got.Data["key"] != "b-v5" {
		t.Errorf("apps/b = %+v", got)
	}
	if got := mustSpike(t, admin, "", "secret", "get", "apps/b", "--version", "4", "--field", "key"); strings.TrimSpace(got) != "b-v4" {
		t.Errorf("apps/b version 4 after the head was sealed = %q", got)
	}
	metadata("apps/a")
	if md.Custom["owner"] != "team-a" || md.MaxVersions != 10 {
		t.Errorf("apps/a metadata after a write = %+v", md)
	}
	if r := spike(t, admin, "", "secret", "get", "apps/a", "--version", "1"); r.code == 0 || !strings.Contains(r.stderr, "destroyed") {
		t.Errorf("apps/a version 1 after the head was sealed: exit %d, %q", r.code, r.stderr)
	}

	// An adopted secret holds no value that opens the old way: with its head
	// removed, even with the values' format byte put back, and with the
	// settings edited, it is data loss rather than a secret trusted as found.
	for _, sql := range []string{
		`UPDATE secrets SET head = NULL, incarnation = NULL, cas_required = false WHERE path = 'apps/b'`,
		`UPDATE secret_versions SET sealed = set_byte(sealed, 0, 1) WHERE path = 'apps/b' AND sealed IS NOT NULL`,
	} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"secret", "get", "apps/b"},
		{"secret", "metadata", "get", "apps/b"},
		{"secret", "put", "apps/b", "key=no-cas"},
	} {
		if r := spike(t, admin, "", args...); r.code == 0 || !strings.Contains(r.stderr, "apps/b") || !strings.Contains(r.stderr, "authenticat") {
			t.Errorf("spike %v on apps/b without its head: exit %d, %q; want data loss", args, r.code, r.stderr)
		}
	}

	// Policies and the audit trail.
	if out := mustSpike(t, admin, "", "policy", "list"); !strings.Contains(out, "web-read") || strings.Contains(out, "gone") {
		t.Errorf("policy list = %s", out)
	}
	out := mustSpike(t, admin, "", "audit", "verify", "-o", "json")
	var report struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || !report.OK {
		t.Errorf("audit verify = %s, %v", out, err)
	}
}

// useFixtureToken checks the admin token that the old release issued with
// the fixture (testdata/schema5.token): it must authenticate under the
// current release, so a call with it either works or, once the token's
// lifetime has passed (it was issued when the fixture was made), is
// refused as expired, never as unknown or altered. Then it logs in with
// the password, for a token that outlives the test.
func useFixtureToken(t *testing.T, s *stack, admin []string, password string) {
	t.Helper()
	token, err := os.ReadFile("testdata/schema5.token")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.adminTokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := spike(t, admin, "", "secret", "list"); r.code != 0 && !strings.Contains(r.stderr, "admin token expired at") {
		t.Errorf("the old release's admin token: exit %d, stderr %q; want it accepted, or refused as expired", r.code, r.stderr)
	}
	mustSpike(t, admin, password, "login")
}
