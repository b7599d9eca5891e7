package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
)

// agentPollInterval is long enough that a re-render seen within the
// test's waits came from a pushed change (WatchSecrets), not from polling.
const agentPollInterval = "1h"

// spike agent as a workload, with its own SVID and a policy: --once renders
// the files (mode 0600, exact content) and runs each reload once; the
// running agent renders again after a put of a secret a template reads
// and runs the reload command (or sends the signal) exactly once per
// change, and never for a put that changes no file; a bad configuration is
// refused with its line. No secret value reaches the agent's log.
func TestSpikeAgent(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "apps/agent/db", "user=alice", "pass=pw-v1")
	mustSpike(t, admin, "", "secret", "put", "apps/agent/api", "token=tok-v1")
	mustSpike(t, admin, "", "secret", "put", "apps/agent/other", "x=1")
	id := spiffeid.RequireFromString("spiffe://spike.local/app/agent")
	mustSpike(t, admin, "", "policy", "put", "agent", "--spiffe-id", id.String(), "--path", "apps/agent/**", "--perm", "read")
	workload := s.pilotEnv(t, 0, id)

	dir := t.TempDir()
	reloads := filepath.Join(dir, "reloads")
	signals := filepath.Join(dir, "signals")
	pidFile := filepath.Join(dir, "app.pid")
	config := filepath.Join(dir, "agent.yaml")
	writeText(t, filepath.Join(dir, "db.tmpl"), `DB_USER={{ secret "apps/agent/db" "user" }}
DB_PASS={{ secret "apps/agent/db" "pass" }}
`)
	writeText(t, config, fmt.Sprintf(`wait: 300ms
poll_interval: %s
templates:
  - source: db.tmpl
    destination: out/db.env
    command: [sh, -c, "echo reload >> %s"]
  - contents: '{{ range $k, $v := secretData "apps/agent/api" }}{{ $k }}: {{ $v }}{{ end }}'
    destination: out/api.yaml
    pid_file: app.pid
    signal: HUP
`, agentPollInterval, reloads))
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The process the api template signals counts its SIGHUPs.
	app := exec.CommandContext(t.Context(), "sh", "-c",
		fmt.Sprintf(`trap 'echo hup >> %s' HUP; echo $$ > %s.tmp && mv %s.tmp %s; while :; do sleep 0.05; done`, signals, pidFile, pidFile, pidFile))
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	waitWithin(t, 10*time.Second, "the app's pid file", func() bool { _, err := os.Stat(pidFile); return err == nil })

	dbEnv, apiYAML := filepath.Join(dir, "out", "db.env"), filepath.Join(dir, "out", "api.yaml")
	wantDB := func(pass string) string { return "DB_USER=alice\nDB_PASS=" + pass + "\n" }

	// A bad configuration is refused before anything is rendered.
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown field", "templates:\n  - contents: x\n    destination: f\n    comand: [true]\n", "line 4: field comand not found"},
		{"world-readable mode", "templates:\n  - contents: x\n    destination: f\n    mode: \"0644\"\n", "bad.yaml:2: template 1: mode: 0644 is wider than 0640"},
		{"no template", "once: true\n", "templates: none given"},
	} {
		bad := filepath.Join(dir, "bad.yaml")
		writeText(t, bad, tt.yaml)
		r := spike(t, workload, "", "agent", "--config", bad)
		if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 saying %q", tt.name, r.code, r.stderr, tt.want)
		}
	}
	if r := spike(t, workload, "", "agent"); r.code != 1 || !strings.Contains(r.stderr, "--config FILE is required") {
		t.Errorf("without --config: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused configuration rendered a file")
	}

	if r := spike(t, workload, "", "agent", "--config", config, "--check"); r.code != 1 || !strings.Contains(r.stderr, "not rendered yet") {
		t.Errorf("--check before any render: exit %d, stderr %q; want exit 1 saying not rendered yet", r.code, r.stderr)
	}
	// --once renders, reloads once and exits.
	r := spike(t, workload, "", "agent", "--config", config, "--once")
	if r.code != 0 {
		t.Fatalf("spike agent --once: exit %d\nstderr: %s", r.code, r.stderr)
	}
	checkRendered(t, dbEnv, wantDB("pw-v1"))
	checkRendered(t, apiYAML, "token: tok-v1")
	waitWithin(t, 5*time.Second, "the first SIGHUP", func() bool { return countLines(t, signals) == 1 })
	if n := countLines(t, reloads); n != 1 {
		t.Errorf("after --once: %d reloads, want 1", n)
	}
	if r := spike(t, workload, "", "agent", "--config", config, "--check"); r.code != 0 {
		t.Errorf("--check after the render: exit %d, stderr %q", r.code, r.stderr)
	}
	// Once more: nothing changed, nothing runs.
	if r := spike(t, workload, "", "agent", "--config", config, "--once"); r.code != 0 {
		t.Fatalf("spike agent --once again: exit %d\nstderr: %s", r.code, r.stderr)
	}
	for _, leak := range []string{"pw-v1", "tok-v1"} {
		if strings.Contains(r.stderr, leak) {
			t.Errorf("the agent's log holds a secret value:\n%s", r.stderr)
		}
	}

	// The agent keeps the files current.
	agent := startAgent(t, workload, config)
	waitWithin(t, 10*time.Second, "the agent watching", func() bool { return strings.Contains(agent.log(), "watching for changes") })
	time.Sleep(time.Second)
	expectCounts(t, "the running agent's first render (nothing changed)", reloads, 1, signals, 1)

	mustSpike(t, admin, "", "secret", "put", "apps/agent/db", "user=alice", "pass=pw-v2")
	waitWithin(t, 10*time.Second, "db.env re-rendered", func() bool { return readText(t, dbEnv) == wantDB("pw-v2") })
	waitWithin(t, 5*time.Second, "the reload", func() bool { return countLines(t, reloads) == 2 })
	checkRendered(t, dbEnv, wantDB("pw-v2"))

	// A put that changes no file (another secret; the same values again)
	// reloads nothing.
	mustSpike(t, admin, "", "secret", "put", "apps/agent/other", "x=2")
	mustSpike(t, admin, "", "secret", "put", "apps/agent/db", "user=alice", "pass=pw-v2")
	time.Sleep(2 * time.Second)
	expectCounts(t, "after puts that change no file", reloads, 2, signals, 1)

	// Signal mode.
	mustSpike(t, admin, "", "secret", "put", "apps/agent/api", "token=tok-v2")
	waitWithin(t, 10*time.Second, "api.yaml re-rendered", func() bool { return readText(t, apiYAML) == "token: tok-v2" })
	waitWithin(t, 5*time.Second, "the SIGHUP", func() bool { return countLines(t, signals) == 2 })
	time.Sleep(time.Second)
	expectCounts(t, "after the api change", reloads, 2, signals, 2)

	for _, leak := range []string{"pw-v1", "pw-v2", "tok-v1", "tok-v2"} {
		if strings.Contains(agent.log(), leak) {
			t.Errorf("the agent's log holds a secret value:\n%s", agent.log())
		}
	}
}

// runningAgent is a `spike agent` process and its log.
type runningAgent struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (a *runningAgent) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.String()
}

// startAgent starts spike agent and stops it (SIGTERM, then it must exit
// 0) when the test ends.
func startAgent(t *testing.T, env []string, config string) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "spike"), "agent", "--config", config)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.buf.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(os.Interrupt)
		<-copied
		if err := cmd.Wait(); err != nil {
			t.Errorf("spike agent after SIGINT: %v\nlog:\n%s", err, a.log())
		}
		t.Logf("spike agent's log:\n%s", a.log())
	})
	return a
}

func writeText(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// countLines counts the lines of a file that may not exist yet.
func countLines(t *testing.T, path string) int {
	t.Helper()
	return strings.Count(readText(t, path), "\n")
}

// checkRendered checks a rendered file's content and mode.
func checkRendered(t *testing.T, path, want string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %04o, want 0600", path, info.Mode().Perm())
	}
	if got := readText(t, path); got != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

func expectCounts(t *testing.T, when, reloads string, wantReloads int, signals string, wantSignals int) {
	t.Helper()
	if r, s := countLines(t, reloads), countLines(t, signals); r != wantReloads || s != wantSignals {
		t.Errorf("%s: %d reloads and %d signals, want %d and %d", when, r, s, wantReloads, wantSignals)
	}
}
