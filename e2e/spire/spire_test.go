//go:build spire

// Package spire_test runs SPIKE under a real SPIRE server and agent: Keeper,
// Nexus, Pilot and a workload get their SVIDs from the Workload API, by the
// path of their executable and their uid, with an X509-SVID TTL short enough
// that every SVID rotates several times while requests keep flowing.
//
// It needs the pinned SPIRE binaries (tools/spire): it builds them into
// bin/spire, which costs minutes the first time and nothing afterwards, or
// takes them from SPIKE_SPIRE_BIN. It fails, never skips, when it cannot.
// Run it with `make test-spire`; the build tag keeps it out of `make test`.
package spire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// repoRoot is the directory of go.work above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test directory: run the test inside the SPIKE repository")
		}
		dir = parent
	}
}

// spireBinaries returns the directory holding spire-server and spire-agent:
// $SPIKE_SPIRE_BIN if set, otherwise bin/spire, built (or found up to date)
// from the pinned tools module exactly as `make spire` does.
func spireBinaries(t *testing.T, root string) string {
	t.Helper()
	if dir := os.Getenv("SPIKE_SPIRE_BIN"); dir != "" {
		for _, name := range []string{"spire-server", "spire-agent"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				t.Fatalf("SPIKE_SPIRE_BIN=%s has no %s: %v", dir, name, err)
			}
		}
		return dir
	}
	dir := filepath.Join(root, "bin", "spire")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/spiffe/spire/cmd/spire-server", "github.com/spiffe/spire/cmd/spire-agent")
	cmd.Dir = filepath.Join(root, "tools", "spire")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot build SPIRE, which this test needs (it fails rather than skips without it): "+
			"go build in tools/spire: %v\n%s\n"+
			"`make spire` builds bin/spire; SPIKE_SPIRE_BIN=<dir> points the test at prebuilt spire-server and spire-agent",
			err, out)
	}
	t.Logf("SPIRE binaries in %s (go build: %s)", dir, time.Since(start).Round(time.Millisecond))
	return dir
}

// spire is a SPIRE server and agent running as processes, with their state
// in a temporary directory.
type spire struct {
	bin          string
	dir          string
	serverSocket string
	agentSocket  string
	// agentID is the agent's stable alias, the parent of every entry.
	agentID string
	server  *proctest.Process
	agent   *proctest.Process
}

// startSPIRE starts a server whose X509-SVIDs live ttl and an agent attested
// with a join token, using the local stack's config templates.
func startSPIRE(t *testing.T, root, bin, trustDomain string, ttl time.Duration) *spire {
	t.Helper()
	// A short directory: Unix socket paths are limited to 107 bytes, and
	// t.TempDir's path holds the (long) test name.
	dir, err := os.MkdirTemp("", "spire-e2e-") //nolint:usetesting // see above
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"server", "agent"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &spire{
		bin:          bin,
		dir:          dir,
		serverSocket: filepath.Join(dir, "server.sock"),
		agentSocket:  filepath.Join(dir, "agent.sock"),
		agentID:      "spiffe://" + trustDomain + "/spire-agent/local",
	}
	serverAddr := proctest.FreeAddr(t)
	port := serverAddr[strings.LastIndex(serverAddr, ":")+1:]
	templates := filepath.Join(root, "deploy", "local", "spire")

	serverConf := filepath.Join(dir, "server.conf")
	render(t, filepath.Join(templates, "server.conf.tmpl"), serverConf, map[string]string{
		"SERVER_PORT":   port,
		"SERVER_SOCKET": s.serverSocket,
		"TRUST_DOMAIN":  trustDomain,
		"SERVER_DIR":    filepath.Join(dir, "server"),
		"LOG_LEVEL":     "INFO",
		"SVID_TTL":      ttl.String(),
		"AGENT_TTL":     "1h",
	})
	s.server = proctest.Start(t, launcher(t, filepath.Join(bin, "spire-server"), serverConf), []string{"PATH=" + os.Getenv("PATH")})
	s.server.WaitListening(serverAddr)
	s.waitHealthy(t, s.server, "spire-server", "healthcheck", "-socketPath", s.serverSocket)

	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, []byte(s.serverCmd(t, "bundle", "show")), 0o600); err != nil {
		t.Fatal(err)
	}
	var token struct {
		Value string `json:"value"`
	}
	out := s.serverCmd(t, "token", "generate", "-spiffeID", s.agentID, "-ttl", "600", "-output", "json")
	if err := json.Unmarshal([]byte(out), &token); err != nil || token.Value == "" {
		t.Fatalf("spire-server token generate printed %q: %v", out, err)
	}
	agentConf := filepath.Join(dir, "agent.conf")
	render(t, filepath.Join(templates, "agent.conf.tmpl"), agentConf, map[string]string{
		"SERVER_PORT":  port,
		"AGENT_SOCKET": s.agentSocket,
		"TRUST_DOMAIN": trustDomain,
		"TRUST_BUNDLE": bundle,
		"AGENT_DIR":    filepath.Join(dir, "agent"),
		"LOG_LEVEL":    "INFO",
		"JOIN_TOKEN":   token.Value,
	})
	s.agent = proctest.Start(t, launcher(t, filepath.Join(bin, "spire-agent"), agentConf), []string{"PATH=" + os.Getenv("PATH")})
	s.waitHealthy(t, s.agent, "spire-agent", "healthcheck", "-socketPath", s.agentSocket)
	return s
}

// register gives the executable at path, run by this test's uid, the SPIFFE
// ID id: the same selectors deploy/local/spire.sh uses.
func (s *spire) register(t *testing.T, id, path string) {
	t.Helper()
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	s.serverCmd(t, "entry", "create", "-parentID", s.agentID, "-spiffeID", id,
		"-selector", "unix:path:"+resolved, "-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
}

// serverCmd runs `spire-server <cmd> <sub> -socketPath ... args...`.
func (s *spire) serverCmd(t *testing.T, cmd, sub string, args ...string) string {
	t.Helper()
	c := exec.Command(filepath.Join(s.bin, "spire-server"), append([]string{cmd, sub, "-socketPath", s.serverSocket}, args...)...)
	out, err := c.Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("spire-server %s %s %s: %v\n%s%s", cmd, sub, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// waitHealthy runs `<binary> args...` until it succeeds, for up to 30s.
func (s *spire) waitHealthy(t *testing.T, p *proctest.Process, binary string, args ...string) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err = exec.Command(filepath.Join(s.bin, binary), args...).CombinedOutput()
		if err == nil {
			return
		}
	}
	t.Fatalf("%s not healthy after 30s: %v\n%s\nlog:\n%s", binary, err, out, p.LogTail())
}

// launcher writes a script that execs `binary run -config conf`, since
// proctest starts programs without arguments. exec keeps the pid, so
// proctest's kill and parent-death signal reach SPIRE itself.
func launcher(t *testing.T, binary, conf string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(binary))
	script := fmt.Sprintf("#!/bin/sh\nexec %s run -config %s\n", shellQuote(binary), shellQuote(conf))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// render fills a deploy/local/spire template as spire.sh does: every @KEY@
// becomes the value, escaped for an HCL string.
func render(t *testing.T, tmpl, out string, vars map[string]string) {
	t.Helper()
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for k, v := range vars {
		v = strings.ReplaceAll(v, `\`, `\\`)
		v = strings.ReplaceAll(v, `"`, `\"`)
		text = strings.ReplaceAll(text, "@"+k+"@", v)
	}
	if m := placeholder.FindString(text); m != "" {
		t.Fatalf("%s: no value for %s", tmpl, m)
	}
	if err := os.WriteFile(out, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
