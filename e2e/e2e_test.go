// Package e2e_test drives the real spike-keeper, spike-nexus and spike
// binaries as processes, over real SPIFFE mTLS with SVIDs minted by a test
// CA, against a real throwaway PostgreSQL.
package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/svid"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spike-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := proctest.Build(dir,
		"github.com/spike-dev/spike/keeper/cmd/spike-keeper",
		"github.com/spike-dev/spike/nexus/cmd/spike-nexus",
		"github.com/spike-dev/spike/pilot/cmd/spike",
		"github.com/spike-dev/spike/shared/examples/workload",
	); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

var td = spiffeid.RequireTrustDomainFromString("spike.local")

// svidEnv mints an SVID for id into dir and returns the variables that
// make a program use it.
func svidEnv(t *testing.T, ca *devca.CA, id spiffeid.ID) []string {
	t.Helper()
	cfg, err := ca.WriteSVID(filepath.Join(t.TempDir(), "svid"), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"SPIKE_SVID_CERT=" + cfg.CertFile,
		"SPIKE_SVID_KEY=" + cfg.KeyFile,
		"SPIKE_TRUST_BUNDLE=" + cfg.BundleFile,
	}
}

// baseEnv is what every process gets. HOME points nowhere useful, so that
// nothing reads or writes the real ~/.spike.
func baseEnv() []string {
	// The ops listeners' fixed default ports would collide between the
	// stacks of parallel tests.
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "SPIKE_TRUST_DOMAIN=spike.local",
		"SPIKE_KEEPER_OPS_LISTEN=off", "SPIKE_NEXUS_OPS_LISTEN=off"}
}

func env(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

type secretJSON struct {
	Path      string            `json:"path"`
	Version   int64             `json:"version"`
	Data      map[string]string `json:"data"`
	CreatedBy string            `json:"created_by"`
}

func getJSON(t *testing.T, pilot []string, path string) secretJSON {
	t.Helper()
	out := mustSpike(t, pilot, "", "secret", "get", path, "-o", "json")
	var s secretJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("secret get -o json printed %q: %v", out, err)
	}
	return s
}

// stack is one or more Keepers and one or more Nexus replicas running as
// processes on one fresh database.
type stack struct {
	ca  *devca.CA
	dsn string
	// keeper is the first of keepers, at keeperAddr.
	keeper      *proctest.Process
	keeperAddr  string
	keepers     []*proctest.Process
	keeperAddrs []string
	nexus       []*proctest.Process
	nexusAddrs  []string
	// adminTokenFile is where `spike` keeps the admin token.
	adminTokenFile string
	adminToken     string
}

func startStack(t *testing.T, replicas int) *stack {
	t.Helper()
	return startStackOn(t, pgtest.NewRoles(t, ""), replicas)
}

// startStackOn is startStack on the database of db.
func startStackOn(t *testing.T, db pgtest.Roles, replicas int) *stack {
	t.Helper()
	return startCluster(t, db, replicas, 1)
}

// startCluster is startStackOn with keepers Keepers (keeper/1, keeper/2...),
// each a peer of the others, and every Nexus configured with all of them.
func startCluster(t *testing.T, db pgtest.Roles, replicas, keepers int, nexusEnv ...string) *stack {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{ca: ca, dsn: db.Admin, adminTokenFile: filepath.Join(t.TempDir(), "admin-token")}
	// As in production: the schema's owner migrates, and Nexus serves as
	// a role of its own that the migration grants its privileges to.
	migrate(t, db)
	for range keepers {
		s.keeperAddrs = append(s.keeperAddrs, proctest.FreeAddr(t))
	}
	var urls []string
	for _, a := range s.keeperAddrs {
		urls = append(urls, "https://"+a)
	}
	for i, addr := range s.keeperAddrs {
		peers := slices.Delete(slices.Clone(urls), i, i+1)
		keeperEnv := env(baseEnv(), svidEnv(t, ca, identity.Keeper(td, strconv.Itoa(i+1))), []string{
			"SPIKE_KEEPER_LISTEN=" + addr,
			"SPIKE_KEEPER_PEERS=" + strings.Join(peers, ","),
			"SPIKE_KEEPER_RESEED_INTERVAL=200ms",
			"SPIKE_KEEPER_KDF_TIME=1",
			"SPIKE_KEEPER_KDF_MEMORY_KIB=8192",
			"SPIKE_KEEPER_KDF_THREADS=1",
		})
		p := proctest.Start(t, filepath.Join(binDir, "spike-keeper"), keeperEnv)
		p.WaitListening(addr)
		s.keepers = append(s.keepers, p)
	}
	s.keeper, s.keeperAddr = s.keepers[0], s.keeperAddrs[0]
	nexusSVID := svidEnv(t, ca, identity.Nexus(td))
	for range replicas {
		s.startNexus(t, nexusSVID, db.Serving, urls, nexusEnv...)
	}
	return s
}

// startNexus starts one more Nexus replica of s, with the SVID of
// nexusSVID, serving the database at dsn with the Keepers at keeperURLs.
func (s *stack) startNexus(t *testing.T, nexusSVID []string, dsn string, keeperURLs []string, nexusEnv ...string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, filepath.Join(binDir, "spike-nexus"), env(baseEnv(), nexusSVID, []string{
		"SPIKE_NEXUS_LISTEN=" + addr,
		"SPIKE_DATABASE_URL=" + dsn,
		"SPIKE_KEEPER_URLS=" + strings.Join(keeperURLs, ","),
		"SPIKE_KEEPER_CHECK_INTERVAL=200ms",
	}, nexusEnv)) // later entries win: nexusEnv overrides
	p.WaitListening(addr)
	s.nexus = append(s.nexus, p)
	s.nexusAddrs = append(s.nexusAddrs, addr)
}

// migrate runs spike-nexus migrate as db's owner for db's serving role.
func migrate(t *testing.T, db pgtest.Roles) {
	t.Helper()
	r := runBin(t, "spike-nexus", env(baseEnv(), []string{
		"SPIKE_DATABASE_OWNER_URL=" + db.Owner,
		"SPIKE_DATABASE_ROLE=" + db.ServingRole,
	}), "", "migrate")
	if r.code != 0 {
		t.Fatalf("spike-nexus migrate: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

// pilotEnv is the environment of `spike` talking to replica i as id. The
// admin's token file is shared by all its environments in this stack;
// anyone else gets a token file of its own, which does not exist.
func (s *stack) pilotEnv(t *testing.T, i int, id spiffeid.ID) []string {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if id == identity.Pilot(td) {
		tokenFile = s.adminTokenFile
	}
	return env(baseEnv(), svidEnv(t, s.ca, id), []string{
		"SPIKE_NEXUS_URL=https://" + s.nexusAddrs[i],
		"SPIKE_TOKEN_FILE=" + tokenFile,
	})
}

func TestWalkingSkeleton(t *testing.T) {
	st := startStack(t, 1)
	ca, keeper, nexus, keeperAddr, nexusAddr := st.ca, st.keeper, st.nexus[0], st.keeperAddr, st.nexusAddrs[0]
	pilot := st.pilotEnv(t, 0, identity.Pilot(td))

	const password = "correct horse battery"
	st.initialise(t)
	out := mustSpike(t, pilot, "", "secret", "put", "apps/demo/db", "user=admin", "pass=s3cr3t")
	if !strings.Contains(out, "version 1") {
		t.Errorf("put printed %q, want it to mention version 1", out)
	}
	want := map[string]string{"user": "admin", "pass": "s3cr3t"}
	got := getJSON(t, pilot, "apps/demo/db")
	if diff := cmp.Diff(want, got.Data); diff != "" || got.Version != 1 || got.CreatedBy != identity.Pilot(td).String() {
		t.Fatalf("get = %+v (-want +got data):\n%s", got, diff)
	}
	if out := mustSpike(t, pilot, "", "secret", "list", "-r", "apps/"); strings.TrimSpace(out) != "apps/demo/db" {
		t.Errorf("list apps/ printed %q", out)
	}

	t.Run("keeper crash seals SPIKE", func(t *testing.T) {
		keeper.Kill()
		waitStatus(t, pilot, func(s statusJSON) bool { return s.Sealed && !s.KeeperReachable })
		r := spike(t, pilot, "", "secret", "get", "apps/demo/db")
		if r.code != 2 || !strings.Contains(r.stderr, "sealed") || !strings.Contains(r.stderr, "spike operator unseal") {
			t.Fatalf("get with Keeper down: exit %d, stderr %q; want 2 and the sealed message", r.code, r.stderr)
		}

		keeper.Restart()
		keeper.WaitListening(keeperAddr)
		waitStatus(t, pilot, func(s statusJSON) bool { return s.Sealed && s.KeeperReachable })
		r = spike(t, pilot, "", "secret", "get", "apps/demo/db")
		if r.code != 2 || !strings.Contains(r.stderr, "sealed") {
			t.Fatalf("get with a restarted Keeper: exit %d, stderr %q; want 2 and sealed", r.code, r.stderr)
		}
		r = spike(t, pilot, "not the password\n", "operator", "unseal")
		if r.code != 2 || !strings.Contains(r.stderr, "wrong password") {
			t.Fatalf("unseal with a wrong password: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := spike(t, pilot, "", "secret", "get", "apps/demo/db"); r.code != 2 {
			t.Fatalf("a wrong password unsealed SPIKE: get exit %d", r.code)
		}
		// The wrong password slowed this caller down for a second.
		waitFor(t, "unseal after the wrong-password backoff", func() bool {
			return spike(t, pilot, password+"\n", "operator", "unseal").code == 0
		})
		if got := getJSON(t, pilot, "apps/demo/db"); !cmp.Equal(want, got.Data) {
			t.Fatalf("after unseal: data = %v, want %v", got.Data, want)
		}
	})

	t.Run("nexus restart keeps data", func(t *testing.T) {
		nexus.Stop()
		nexus.Restart()
		nexus.WaitListening(nexusAddr)
		if got := getJSON(t, pilot, "apps/demo/db"); !cmp.Equal(want, got.Data) {
			t.Fatalf("after Nexus restart: data = %v, want %v", got.Data, want)
		}
		mustSpike(t, pilot, "", "secret", "delete", "apps/demo/db")
		r := spike(t, pilot, "", "secret", "get", "apps/demo/db")
		if r.code != 2 || !strings.Contains(r.stderr, "deleted") {
			t.Fatalf("get after delete: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("non-admin workload is denied", func(t *testing.T) {
		workload := st.pilotEnv(t, 0, spiffeid.RequireFromPath(td, "/app/web"))
		r := spike(t, workload, "", "secret", "list", "apps/")
		if r.code != 2 || !strings.Contains(strings.ToLower(r.stderr), "may not") {
			t.Fatalf("workload list: exit %d, stderr %q; want 2 and a permission error", r.code, r.stderr)
		}
	})

	t.Run("other trust domain is rejected at the handshake", func(t *testing.T) {
		otherTD := spiffeid.RequireTrustDomainFromString("evil.example")
		otherCA, err := devca.New(otherTD)
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := otherCA.Mint(identity.Pilot(otherTD), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The foreign client trusts Nexus's CA, so only the server can
		// refuse the connection.
		bundles := x509bundle.NewSet(ca.Bundle(), otherCA.Bundle())
		conf := tlsconfig.MTLSClientConfig(staticSVID{foreign}, bundles, tlsconfig.AuthorizeID(identity.Nexus(td)))
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
		resp, err := client.Post("https://"+nexusAddr+"/spike.nexus.v1.OperatorService/Status", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("foreign client got HTTP %d, want a TLS handshake failure", resp.StatusCode)
		}
		// With TLS 1.3 the client may see the server's alert or just a
		// reset connection; the server's log says why it refused.
		waitFor(t, "Nexus to log the refused handshake", func() bool {
			return strings.Contains(nexus.LogTail(), `TLS handshake error`) &&
				strings.Contains(nexus.LogTail(), `evil.example`)
		})
		// The same request with our own trust domain's admin SVID works,
		// so the refusal above is about the trust domain.
		own, err := svid.NewSource(t.Context(), svidConfig(t, ca, identity.Pilot(td)))
		if err != nil {
			t.Fatal(err)
		}
		okConf := tlsconfig.MTLSClientConfig(own, own, tlsconfig.AuthorizeID(identity.Nexus(td)))
		okClient := &http.Client{Transport: &http.Transport{TLSClientConfig: okConf, ForceAttemptHTTP2: true}}
		resp, err = okClient.Post("https://"+nexusAddr+"/spike.nexus.v1.OperatorService/Status", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("own admin got HTTP %d", resp.StatusCode)
		}
	})
}

func svidConfig(t *testing.T, ca *devca.CA, id spiffeid.ID) svid.Config {
	t.Helper()
	cfg, err := ca.WriteSVID(filepath.Join(t.TempDir(), "svid"), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type staticSVID struct{ s *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

type statusJSON struct {
	Initialized     bool  `json:"initialized"`
	Sealed          bool  `json:"sealed"`
	KeeperReachable bool  `json:"keeper_reachable"`
	SchemaVersion   int64 `json:"schema_version"`
}

// waitStatus polls `spike operator status` until ok accepts it. Nexus
// checks Keeper on an interval (200ms here), so a change shows up quickly.
func waitStatus(t *testing.T, pilot []string, ok func(statusJSON) bool) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r := spike(t, pilot, "", "operator", "status", "-o", "json")
		last = r.stdout + r.stderr
		var s statusJSON
		// 2: sealed or not initialised, which the JSON says too.
		if (r.code == 0 || r.code == 2) && json.Unmarshal([]byte(r.stdout), &s) == nil && ok(s) {
			return
		}
	}
	t.Fatalf("status never reached the expected state; last: %s", last)
}
