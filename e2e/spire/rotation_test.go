//go:build spire

package spire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/svid"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
)

const (
	trustDomain = "spike.local"
	password    = "correct horse battery"

	// svidTTL is the X509-SVID TTL of the test's SPIRE server. SPIRE
	// backdates an SVID's NotBefore by 10s, so it is valid for svidTTL+10s;
	// the agent renews it once less than about half of that is left (±10%),
	// checking every 5s: here every 15 to 25 seconds.
	svidTTL      = 30 * time.Second
	svidLifetime = svidTTL + 10*time.Second
	// loopFor is how long requests run while SVIDs rotate: longer than two
	// lifetimes, so that every SVID in use at the start has expired well
	// before the end.
	loopFor = 2*svidLifetime + 20*time.Second
)

var td = spiffeid.RequireTrustDomainFromString(trustDomain)

func TestSPIKEUnderSPIRE(t *testing.T) {
	root := repoRoot(t)
	spireBin := spireBinaries(t, root)

	binDir := t.TempDir()
	if err := proctest.Build(binDir,
		"github.com/spike-dev/spike/keeper/cmd/spike-keeper",
		"github.com/spike-dev/spike/nexus/cmd/spike-nexus",
		"github.com/spike-dev/spike/pilot/cmd/spike",
		"github.com/spike-dev/spike/shared/examples/workload",
	); err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string { return filepath.Join(binDir, name) }

	sp := startSPIRE(t, root, spireBin, trustDomain, svidTTL)

	// One entry per program, by the path of its executable and our uid, as
	// `make up SPIFFE=spire` registers them; this test process is a
	// workload too.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	keeperID, nexusID, pilotID := identity.Keeper(td, "1"), identity.Nexus(td), identity.Pilot(td)
	demoID := spiffeid.RequireFromPath(td, "/app/demo")
	e2eID := spiffeid.RequireFromPath(td, "/app/e2e")
	sp.register(t, keeperID.String(), bin("spike-keeper"))
	sp.register(t, nexusID.String(), bin("spike-nexus"))
	sp.register(t, pilotID.String(), bin("spike"))
	sp.register(t, demoID.String(), bin("workload"))
	sp.register(t, e2eID.String(), self)

	// Keeper and Nexus wait for their SVIDs (the agent picks up new entries
	// within 5 seconds) before they listen.
	base := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "SPIKE_TRUST_DOMAIN=" + trustDomain,
		"SPIKE_KEEPER_OPS_LISTEN=off", "SPIKE_NEXUS_OPS_LISTEN=off",
		"SPIFFE_ENDPOINT_SOCKET=unix://" + sp.agentSocket,
	}
	keeperAddr := proctest.FreeAddr(t)
	keeper := proctest.Start(t, bin("spike-keeper"), append(append([]string{}, base...),
		"SPIKE_KEEPER_LISTEN="+keeperAddr,
		"SPIKE_KEEPER_KDF_TIME=1",
		"SPIKE_KEEPER_KDF_MEMORY_KIB=8192",
		"SPIKE_KEEPER_KDF_THREADS=1",
	))
	keeper.WaitListening(keeperAddr)
	db := pgtest.NewRoles(t, "")
	if r := runBin(t, bin("spike-nexus"), append(append([]string{}, base...),
		"SPIKE_DATABASE_OWNER_URL="+db.Owner, "SPIKE_DATABASE_ROLE="+db.ServingRole), "", "migrate"); r.code != 0 {
		t.Fatalf("spike-nexus migrate: exit %d\nstderr: %s", r.code, r.stderr)
	}
	nexusAddr := proctest.FreeAddr(t)
	nexus := proctest.Start(t, bin("spike-nexus"), append(append([]string{}, base...),
		"SPIKE_NEXUS_LISTEN="+nexusAddr,
		"SPIKE_DATABASE_URL="+db.Serving,
		"SPIKE_KEEPER_URL=https://"+keeperAddr,
		"SPIKE_KEEPER_CHECK_INTERVAL=1s",
	))
	nexus.WaitListening(nexusAddr)

	// Pilot and the demo workload: nothing but the agent's socket.
	pilot := append(append([]string{}, base...),
		"SPIKE_NEXUS_URL=https://"+nexusAddr,
		"SPIKE_TOKEN_FILE="+filepath.Join(t.TempDir(), "admin-token"))
	run := func(name, stdin string, args ...string) result { return runBin(t, bin(name), pilot, stdin, args...) }
	must := func(name, stdin string, args ...string) string {
		t.Helper()
		r := run(name, stdin, args...)
		if r.code != 0 {
			t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}

	// --- the flow, every identity from the Workload API -----------------

	must("spike", password+"\n", "operator", "init")
	must("spike", "", "secret", "put", "apps/demo/db", "user=admin", "pass=s3cr3t")
	var got struct {
		Version   int64             `json:"version"`
		Data      map[string]string `json:"data"`
		CreatedBy string            `json:"created_by"`
	}
	out := must("spike", "", "secret", "get", "apps/demo/db", "-o", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("secret get -o json printed %q: %v", out, err)
	}
	if got.Version != 1 || got.Data["user"] != "admin" || got.Data["pass"] != "s3cr3t" || got.CreatedBy != pilotID.String() {
		t.Fatalf("get apps/demo/db = %+v; want version 1, user=admin pass=s3cr3t, created by %s", got, pilotID)
	}
	// A copy of spike at a path no entry names gets no SVID: it says so,
	// and what to register, instead of waiting for its whole timeout.
	unregistered := filepath.Join(t.TempDir(), "spike")
	if raw, err := os.ReadFile(bin("spike")); err != nil || os.WriteFile(unregistered, raw, 0o755) != nil {
		t.Fatalf("copy spike: %v", err)
	}
	if r := runBin(t, unregistered, pilot, "", "operator", "status"); r.code != 1 ||
		!strings.Contains(r.stderr, "gave Pilot no SVID") || !strings.Contains(r.stderr, "unix:path:"+unregistered) {
		t.Errorf("spike at an unregistered path: exit %d, stderr %q; want a message naming the path to register", r.code, r.stderr)
	}
	if r := run("workload", "", "apps/demo/db", "pass"); r.code != 2 || !strings.Contains(r.stderr, demoID.String()) {
		t.Fatalf("workload before any policy: exit %d, stderr %q; want 2, refused as %s", r.code, r.stderr, demoID)
	}
	must("spike", "", "policy", "put", "demo", "--spiffe-id", demoID.String(), "--path", "apps/demo/**", "--perm", "read,list")
	must("spike", "", "policy", "put", "e2e", "--spiffe-id", e2eID.String(), "--path", "apps/e2e/**", "--perm", "read,write")
	if out := must("workload", "", "apps/demo/db", "pass"); out != "s3cr3t" {
		t.Fatalf("workload read %q, want s3cr3t", out)
	}

	// --- requests while every SVID rotates --------------------------------

	srcCtx, cancelSrc := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelSrc()
	src, err := svid.NewSource(srcCtx, svid.Config{EndpointSocket: "unix://" + sp.agentSocket})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if id, err := src.ID(); err != nil || id != e2eID {
		t.Fatalf("the test's own SVID is %v (%v), want %s", id, err, e2eID)
	}

	var (
		fails = &failures{}
		certs = &seenCerts{}
	)
	// observe records the certificate a server presented in a handshake.
	observe := func(name string, conf *tls.Config) *tls.Config {
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				if err := certs.add(name, cs.PeerCertificates[0], time.Now()); err != nil {
					fails.add(name, err)
				}
			}
			return nil
		}
		return conf
	}
	nexusURL := "https://" + nexusAddr
	loopCtx, stop := context.WithTimeout(t.Context(), loopFor)
	defer stop()
	var wg sync.WaitGroup
	every := func(d time.Duration, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; loopCtx.Err() == nil; i++ {
				f(i)
				select {
				case <-loopCtx.Done():
				case <-time.After(d):
				}
			}
		}()
	}
	// Each request gets its own deadline, not the loop's: the loop ending
	// must not cancel a request in flight.
	reqCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 20*time.Second)
	}

	// A long-lived client that keeps its HTTP/2 connection: established
	// connections outlive the SVIDs they were made with.
	longClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: observe("nexus", mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID))), ForceAttemptHTTP2: true,
	}}
	longSecrets := nexusv1connect.NewSecretServiceClient(longClient, nexusURL)
	if _, err := longSecrets.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/e2e/long", Data: map[string]string{"i": "start"},
	})); err != nil {
		t.Fatalf("put apps/e2e/long as %s: %v", e2eID, err)
	}
	every(100*time.Millisecond, func(i int) {
		ctx, cancel := reqCtx()
		defer cancel()
		v := strconv.Itoa(i)
		_, err := longSecrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "apps/e2e/long", Data: map[string]string{"i": v}}))
		fails.count("long-lived client put", err)
		if err != nil {
			return
		}
		resp, err := longSecrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/e2e/long"}))
		if err == nil && resp.Msg.GetSecret().GetData()["i"] != v {
			err = fmt.Errorf("read i=%q after writing %q", resp.Msg.GetSecret().GetData()["i"], v)
		}
		fails.count("long-lived client get", err)
	})
	// A new connection, so a new mutual TLS handshake, for every request:
	// both sides must present an SVID that is valid now.
	every(250*time.Millisecond, func(int) {
		ctx, cancel := reqCtx()
		defer cancel()
		tr := &http.Transport{
			TLSClientConfig: observe("nexus", mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID))), ForceAttemptHTTP2: true,
		}
		defer tr.CloseIdleConnections()
		_, err := nexusv1connect.NewSecretServiceClient(&http.Client{Transport: tr}, nexusURL).
			GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/e2e/long"}))
		fails.count("new-connection client get", err)
	})
	// Pilot and the workload as processes: each run fetches its SVID anew.
	every(500*time.Millisecond, func(i int) {
		v := strconv.Itoa(i)
		for _, c := range []struct {
			kind, name, want string
			args             []string
		}{
			{"spike secret put", "spike", "", []string{"secret", "put", "apps/demo/loop", "n=" + v}},
			{"spike secret get", "spike", v, []string{"secret", "get", "apps/demo/loop", "--field", "n"}},
			{"workload get", "workload", "s3cr3t", []string{"apps/demo/db", "pass"}},
		} {
			r := runBin(t, bin(c.name), pilot, "", c.args...)
			var err error
			switch {
			case r.code != 0:
				err = fmt.Errorf("exit %d: %s", r.code, strings.TrimSpace(r.stderr))
			case c.want != "" && r.stdout != c.want:
				err = fmt.Errorf("printed %q, want %q", r.stdout, c.want)
			}
			fails.count(c.kind, err)
		}
	})
	// Keeper's serving certificate (it refuses us afterwards: only Nexus
	// may call it, and it logs the refusal).
	every(2*time.Second, func(int) {
		conf := observe("keeper", mtls.ClientConfig(src, tlsconfig.AuthorizeID(keeperID)))
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", keeperAddr, conf)
		if err == nil {
			conn.Close()
		}
		fails.count("TLS handshake with Keeper", err)
	})
	// The test's own SVID, as the Workload API source hands it out.
	every(time.Second, func(int) {
		s, err := src.GetX509SVID()
		if err == nil {
			err = certs.add("e2e workload (own SVID)", s.Certificates[0], time.Now())
		}
		fails.count("own SVID", err)
	})
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start).Round(time.Second)

	t.Logf("%s of requests with %s X509-SVIDs (valid %s): %s", elapsed, svidTTL, svidLifetime, fails.summary())
	for _, f := range fails.list() {
		t.Errorf("failed: %s", f)
	}
	for _, name := range []string{"nexus", "keeper", "e2e workload (own SVID)"} {
		cs := certs.get(name)
		t.Logf("%s presented %d different SVIDs: %s", name, len(cs), describe(cs))
		// Three SVIDs: two rotations, seen from outside the process.
		if len(cs) < 3 {
			t.Errorf("%s presented %d different SVIDs in %s; want at least 3 (rotation at about half of the %s lifetime)",
				name, len(cs), elapsed, svidLifetime)
			continue
		}
		if first, last := cs[0], cs[len(cs)-1]; !last.NotBefore.After(first.NotAfter) {
			t.Errorf("%s: the last SVID (valid from %s) was issued before the first one (valid until %s) expired; "+
				"want proof that it runs on an SVID fetched after its first one expired",
				name, last.NotBefore.Format(time.TimeOnly), first.NotAfter.Format(time.TimeOnly))
		}
	}

	// The same Keeper and Nexus, started before the loop, still serve.
	if out := must("spike", "", "secret", "get", "apps/e2e/long", "--field", "i"); out == "" || out == "start" {
		t.Errorf("apps/e2e/long holds i=%q after the loop", out)
	}
}

// failures counts requests by kind and keeps the errors.
type failures struct {
	mu   sync.Mutex
	ok   map[string]int
	errs []string
}

func (f *failures) count(kind string, err error) {
	if err != nil {
		f.add(kind, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok == nil {
		f.ok = map[string]int{}
	}
	f.ok[kind]++
}

func (f *failures) add(kind string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), kind, err))
}

func (f *failures) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 20 {
		return append(f.errs[:20:20], fmt.Sprintf("... and %d more", len(f.errs)-20))
	}
	return append([]string(nil), f.errs...)
}

func (f *failures) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	var parts []string
	for kind, n := range f.ok {
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", kind, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d succeeded, %d failed (%s)", total, len(f.errs), strings.Join(parts, ", "))
}

// seenCerts keeps, per server or workload, the distinct certificates it
// presented, in the order they were first seen.
type seenCerts struct {
	mu    sync.Mutex
	certs map[string][]*x509.Certificate
}

// add records c, seen at `at`, and fails if c was not valid then.
func (s *seenCerts) add(name string, c *x509.Certificate, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.certs == nil {
		s.certs = map[string][]*x509.Certificate{}
	}
	if list := s.certs[name]; len(list) == 0 || list[len(list)-1].SerialNumber.Cmp(c.SerialNumber) != 0 {
		known := false
		for _, old := range list {
			if old.SerialNumber.Cmp(c.SerialNumber) == 0 {
				known = true
			}
		}
		if !known {
			s.certs[name] = append(list, c)
		}
	}
	if at.Before(c.NotBefore) || at.After(c.NotAfter) {
		return fmt.Errorf("%s presented an SVID valid from %s to %s at %s", name,
			c.NotBefore.Format(time.TimeOnly), c.NotAfter.Format(time.TimeOnly), at.Format(time.TimeOnly))
	}
	return nil
}

func (s *seenCerts) get(name string) []*x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*x509.Certificate(nil), s.certs[name]...)
}

func describe(cs []*x509.Certificate) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.NotBefore.Format(time.TimeOnly)+"–"+c.NotAfter.Format(time.TimeOnly))
	}
	return strings.Join(parts, ", ")
}

// result is what one run of a program produced.
type result struct {
	stdout, stderr string
	code           int
}

// runBin runs a program to completion with env and stdin.
func runBin(t *testing.T, path string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return result{stderr: err.Error(), code: -1}
		}
		r.code = ee.ExitCode()
	}
	return r
}
