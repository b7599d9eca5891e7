package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
)

// A rolling upgrade: the next release migrates the database while this
// release's Nexus replicas still run. A migration that says, in its file,
// that a Nexus of the previous schema may serve it ("-- serves-from: N",
// expand-only) keeps this release's Nexus serving: across a restart too.
// One that does not stops it with a clear message, and a running one goes
// unready. (The previous release's binaries predate the rule and refuse
// any newer schema, so "previous" here is this release's Nexus against the
// next release's schema: the rule is what every later upgrade relies on.)
func TestRollingUpgrade(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	ops := proctest.FreeAddr(t)
	s := startCluster(t, db, 1, 1, "SPIKE_NEXUS_OPS_LISTEN="+ops)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "rolling/a", "n=1")

	owner, err := pgx.Connect(t.Context(), db.Owner)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(t.Context())
	var latest int64
	if err := owner.QueryRow(t.Context(), "SELECT max(version) FROM schema_migrations").Scan(&latest); err != nil {
		t.Fatal(err)
	}
	// The next release's migration, expand-only, as spike-nexus migrate
	// of that release would apply it.
	for _, stmt := range []string{
		`ALTER TABLE secrets ADD COLUMN next_release_note text`,
		fmt.Sprintf(`INSERT INTO schema_migrations (version, serves_from) VALUES (%d, %d)`, latest+1, latest),
	} {
		if _, err := owner.Exec(t.Context(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	mustSpike(t, admin, "", "secret", "put", "rolling/b", "n=2")
	s.nexus[0].Stop()
	s.nexus[0].Restart()
	s.nexus[0].WaitListening(s.nexusAddrs[0])
	mustSpike(t, admin, "correct horse battery\n", "operator", "unseal")
	mustSpike(t, admin, "", "secret", "put", "rolling/c", "n=3")
	for path, want := range map[string]string{"rolling/a": "1", "rolling/b": "2", "rolling/c": "3"} {
		if got := mustSpike(t, admin, "", "secret", "get", path, "--field", "n"); strings.TrimSpace(got) != want {
			t.Errorf("%s = %q on the newer schema, want %q", path, got, want)
		}
	}
	if code, body := readyz(t, ops); code != http.StatusOK {
		t.Errorf("/readyz on the newer schema it may serve: %d %s", code, body)
	}

	// A migration only its own release may serve.
	if _, err := owner.Exec(t.Context(), `INSERT INTO schema_migrations (version, serves_from) VALUES ($1, $1)`, latest+2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the running Nexus to go unready on a schema it cannot serve", func() bool {
		code, body := readyz(t, ops)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "newer than this Nexus")
	})
	s.nexus[0].Stop()
	r := runBin(t, "spike-nexus", env(baseEnv(), svidEnv(t, s.ca, identity.Nexus(td)), []string{
		"SPIKE_NEXUS_LISTEN=" + proctest.FreeAddr(t),
		"SPIKE_DATABASE_URL=" + db.Serving,
		"SPIKE_KEEPER_URLS=https://" + s.keeperAddr,
	}), "")
	if r.code == 0 || !strings.Contains(r.stderr, "is newer than this Nexus supports") {
		t.Errorf("Nexus on a schema it cannot serve: exit %d, stderr %q; want a refusal to start", r.code, r.stderr)
	}
}

// readyz returns the status code and body of Nexus's /readyz at the ops
// address addr.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz") //nolint:noctx // a test's probe, bounded by the client's default transport
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}
