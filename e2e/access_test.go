package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// A workload process with its own SVID reads what its policy allows, is
// denied the rest and lists only its paths; a policy change made through
// Nexus A is enforced by Nexus B within a second.
func TestWorkloadAccess(t *testing.T) {
	st := startStack(t, 2)
	st.initialise(t)
	adminA := st.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, adminA, "", "secret", "put", "apps/web/db", "user=web", "pass=w3b")
	mustSpike(t, adminA, "", "secret", "put", "apps/pay/db", "pass=p4y")
	mustSpike(t, adminA, "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/web/**", "--perm", "read,list")

	webID := spiffeid.RequireFromPath(td, "/app/web")
	webOnB := st.pilotEnv(t, 1, webID)

	// The example workload, as a process of its own, against Nexus B.
	r := runBin(t, "workload", webOnB, "", "apps/web/db", "pass")
	if r.code != 0 || r.stdout != "w3b" {
		t.Fatalf("workload reading its secret: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, "workload", webOnB, "", "apps/pay/db")
	if r.code != 2 || !strings.Contains(r.stderr, "no policy grants") {
		t.Fatalf("workload reading another's secret: exit %d, stderr %q", r.code, r.stderr)
	}
	// `spike` acting as the workload lists only what it may list.
	if out := mustSpike(t, webOnB, "", "secret", "list", "apps/"); strings.TrimSpace(out) != "web/" {
		t.Errorf("workload's list apps/ = %q, want only web/", out)
	}
	if r := spike(t, webOnB, "", "secret", "put", "apps/web/db", "pass=x"); r.code != 2 || !strings.Contains(r.stderr, "no policy grants write") {
		t.Errorf("workload writing without write permission: exit %d, stderr %q", r.code, r.stderr)
	}

	// Policy changes through A reach B within a second.
	src, err := st.ca.Source(webID)
	if err != nil {
		t.Fatal(err)
	}
	web := nexusv1connect.NewSecretServiceClient(
		rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td)))), "https://"+st.nexusAddrs[1])
	readPay := func() error {
		_, err := web.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/pay/db"}))
		return err
	}
	if err := readPay(); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("before the grant: %v", err)
	}
	mustSpike(t, adminA, "", "policy", "put", "web-pay", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/pay/db", "--perm", "read")
	waitWithin(t, time.Second, "Nexus B to honour a grant made through Nexus A", func() bool { return readPay() == nil })
	mustSpike(t, adminA, "", "policy", "delete", "web-pay")
	waitWithin(t, time.Second, "Nexus B to honour a revocation made through Nexus A", func() bool {
		return connect.CodeOf(readPay()) == connect.CodePermissionDenied
	})

	// Token without an admin SVID: the workload presenting the admin's token.
	stolen := append(st.pilotEnv(t, 1, webID), "SPIKE_TOKEN_FILE="+st.adminTokenFile)
	if r := spike(t, stolen, "", "secret", "get", "apps/pay/db"); r.code != 2 || !strings.Contains(r.stderr, "not an admin SPIFFE ID") {
		t.Errorf("workload with the admin's token: exit %d, stderr %q", r.code, r.stderr)
	}
	// Admin SVID without a token.
	noToken := st.pilotEnv(t, 0, identity.Pilot(td))
	noToken = append(noToken, "SPIKE_TOKEN_FILE="+t.TempDir()+"/none")
	if r := spike(t, noToken, "", "secret", "get", "apps/pay/db"); r.code != 2 || !strings.Contains(r.stderr, "spike login") {
		t.Errorf("admin without token: exit %d, stderr %q", r.code, r.stderr)
	}
	// Both replicas' chains verify, and the denials are in the trail.
	var report struct {
		OK     bool `json:"ok"`
		Chains []struct {
			Chain string `json:"chain"`
			OK    bool   `json:"ok"`
		} `json:"chains"`
	}
	out := mustSpike(t, adminA, "", "audit", "verify", "-o", "json")
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("audit verify -o json printed %q: %v", out, err)
	}
	processes := map[string]bool{}
	for _, c := range report.Chains {
		processes[strings.Split(c.Chain, "/")[0]] = true
	}
	if !report.OK || len(processes) != 2 {
		t.Errorf("audit verify: ok=%v, chains of %d processes; want ok and 2: %s", report.OK, len(processes), out)
	}
	denials := mustSpike(t, adminA, "", "audit", "list", "--caller", webID.String(), "--decision", "deny", "-o", "json")
	if !strings.Contains(denials, `"target": "apps/pay/db"`) || !strings.Contains(denials, "no policy grants") {
		t.Errorf("the workload's denials are not in the audit trail: %s", denials)
	}

	// Logout revokes the token for every replica.
	mustSpike(t, adminA, "", "logout")
	mustSpike(t, adminA, "correct horse battery\n", "login")
	if r := spike(t, st.pilotEnv(t, 1, identity.Pilot(td)), "", "secret", "get", "apps/pay/db", "--field", "pass"); r.code != 0 || r.stdout != "p4y" {
		t.Errorf("admin after a new login, on B: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// waitWithin polls cond and fails the test unless it holds within d.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
