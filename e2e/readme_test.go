package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
)

// readmeFence returns the body of the first ```lang block after heading
// in README.md.
func readmeFence(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	fence := "```" + lang + "\n"
	start := strings.Index(s[i:], fence)
	if start < 0 {
		t.Fatalf("no %s block after %q", lang, heading)
	}
	body := s[i+start+len(fence):]
	end := strings.Index(body, "```")
	return body[:end]
}

// readmeBlock returns the lines of the first ```sh block after heading in
// README.md.
func readmeBlock(t *testing.T, heading string) []string {
	t.Helper()
	return strings.Split(strings.TrimSpace(readmeFence(t, heading, "sh")), "\n")
}

// withBin returns env with bin/ (the built binaries) first on PATH.
func withBin(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			kv = "PATH=" + binDir + ":" + strings.TrimPrefix(kv, "PATH=")
		}
		out[i] = kv
	}
	return out
}

// runLine runs one README line with sh in dir and fails the test unless
// it exits 0; it returns what the line printed on stdout.
func runLine(t *testing.T, dir string, env []string, line string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "sh", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("README line %q: %v\nstdout: %s\nstderr: %s", line, err, out, stderr.String())
	}
	return string(out)
}

// longLine is a README line that runs until interrupted (a watch, an
// agent), started in the background.
type longLine struct {
	line           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan error
}

// startLine starts line with sh in dir; sh execs the command, so that a
// signal sent to the process is the command's Ctrl-C. The test's end
// kills it if it still runs.
func startLine(t *testing.T, dir string, env []string, line string) *longLine {
	t.Helper()
	l := &longLine{line: line, done: make(chan error, 1)}
	l.cmd = exec.CommandContext(t.Context(), "sh", "-c", "exec "+line)
	l.cmd.Dir, l.cmd.Env = dir, env
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, &l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	t.Cleanup(func() {
		_ = l.cmd.Process.Kill()
		if err := <-l.done; err != nil {
			t.Logf("README line %q ended: %v", line, err)
		}
	})
	return l
}

// stop sends sig and waits for the line's command to end; it returns its
// error (nil: exit 0).
func (l *longLine) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := l.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("README line %q did not end on %v\nstderr: %s", l.line, sig, l.stderr.String())
		return nil
	}
}

// The README's "Versioned secrets" block runs as written, in order, line
// by line, as the admin of a fresh stack with bin/ on PATH: every command
// succeeds.
func TestReadmeVersionedSecretsBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	env := withBin(s.pilotEnv(t, 0, identity.Pilot(td)))
	dir := t.TempDir()
	for _, line := range readmeBlock(t, "## Versioned secrets") {
		runLine(t, dir, env, line)
	}
	if _, err := os.Stat(dir + "/pass.txt"); !os.IsNotExist(err) {
		t.Errorf("the block left pass.txt behind: %v", err)
	}
}

// The README's "Policies" block runs as written, in order, as one sh
// script that stops at the first failing command (it holds a here-document),
// as the admin of a fresh stack with bin/ on PATH: both puts succeed, the
// check names what the web policy grants, and the block ends with the
// file's policy in place and web deleted.
func TestReadmePoliciesBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	dir := t.TempDir()
	out := runLine(t, dir, withBin(admin), "set -e\n"+readmeFence(t, "### Policies", "sh"))
	const check = "spiffe://spike.local/app/web on apps/web/db: read, list\n  granted by web: read, list\n"
	if !strings.Contains(out, check) {
		t.Errorf("the block printed %q; want the check's answer %q", out, check)
	}
	var list struct {
		Policies []struct {
			Name            string   `json:"name"`
			SPIFFEIDPattern string   `json:"spiffe_id_pattern"`
			PathPattern     string   `json:"path_pattern"`
			Permissions     []string `json:"permissions"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(mustSpike(t, admin, "", "policy", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	want := []string{"ci-deploy spiffe://spike.local/ci/* apps/*/deploy [read]"}
	var got []string
	for _, p := range list.Policies {
		got = append(got, fmt.Sprintf("%s %s %s %v", p.Name, p.SPIFFEIDPattern, p.PathPattern, p.Permissions))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the policies after the block (-want +got):\n%s", diff)
	}
}

// watchedEvent is a line of `spike secret watch -o json`.
type watchedEvent struct {
	Path     string            `json:"path"`
	Kind     string            `json:"kind"`
	Versions []int64           `json:"versions"`
	Data     map[string]string `json:"data"`
}

// The README's "Watching for changes" block runs as the admin: the first
// line prints a put as it commits and, at Ctrl-C (SIGINT), the cursor; the
// second, with CURSOR set to it, prints the next put (and only that) as a
// JSON line with its data.
func TestReadmeWatchBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	env := withBin(admin)
	dir := t.TempDir()
	lines := readmeBlock(t, "### Watching for changes")
	if len(lines) != 2 {
		t.Fatalf("the watch block has %d lines, want 2: %q", len(lines), lines)
	}

	first := startLine(t, dir, env, lines[0])
	// A put made before the stream is up may not be watched: put until the
	// latest put shows (so that the cursor is past every put), within a
	// bounded time.
	n := 0
	waitWithin(t, time.Minute, "the first line to print a put", func() bool {
		n++
		mustSpike(t, admin, "", "secret", "put", "apps/readme/cfg", fmt.Sprintf("n=%d", n))
		want := fmt.Sprintf("apps/readme/cfg  versions [%d]", n)
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if out := first.stdout.String(); strings.Contains(out, want) && strings.Contains(out, "written") {
				return true
			}
		}
		return false
	})
	if err := first.stop(t, syscall.SIGINT); err != nil {
		t.Fatalf("the first line after Ctrl-C: %v\nstderr: %s", err, first.stderr.String())
	}
	_, cursor, ok := strings.Cut(first.stderr.String(), "cursor: ")
	cursor = strings.TrimSpace(cursor)
	if !ok || cursor == "" {
		t.Fatalf("the first line printed no cursor at Ctrl-C; stderr: %q", first.stderr.String())
	}

	// Written while nobody watches: the cursor resumes at it.
	mustSpike(t, admin, "", "secret", "put", "apps/readme/cfg", "n=resumed")
	second := startLine(t, dir, append(env, "CURSOR="+cursor), lines[1])
	var got watchedEvent
	waitWithin(t, time.Minute, "the second line to print the put made after the cursor", func() bool {
		line, _, ok := strings.Cut(second.stdout.String(), "\n")
		if !ok {
			return false
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("the second line printed %q: %v", line, err)
		}
		return true
	})
	want := watchedEvent{Path: "apps/readme/cfg", Kind: "written", Versions: []int64{int64(n + 1)}, Data: map[string]string{"n": "resumed"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the first event after the cursor (-want +got):\n%s", diff)
	}
	if err := second.stop(t, syscall.SIGINT); err != nil {
		t.Errorf("the second line after Ctrl-C: %v\nstderr: %s", err, second.stderr.String())
	}
}

// readmeWorkload gives the README's workload (spiffe://spike.local/app/web)
// read on apps/web/** and puts its two secrets; it returns the admin's and
// the workload's environments, bin/ first on PATH.
func readmeWorkload(t *testing.T, s *stack) (admin, workload []string) {
	t.Helper()
	admin = s.pilotEnv(t, 0, identity.Pilot(td))
	web := spiffeid.RequireFromString("spiffe://spike.local/app/web")
	mustSpike(t, admin, "", "policy", "put", "web", "--spiffe-id", web.String(), "--path", "apps/web/**", "--perm", "read")
	mustSpike(t, admin, "", "secret", "put", "apps/web/db", "user=web", "pass=p1")
	mustSpike(t, admin, "", "secret", "put", "apps/web/api", "token=t1")
	return admin, withBin(s.pilotEnv(t, 0, web))
}

// writeExec writes an executable shell script.
func writeExec(t *testing.T, path, script string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o700); err != nil {
		t.Fatal(err)
	}
}

// The README's `spike run` block runs as written, as the workload, with a
// ./server that prints the variables it got and its arguments.
func TestReadmeRunBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	_, workload := readmeWorkload(t, s)
	dir := t.TempDir()
	writeExec(t, filepath.Join(dir, "server"), `echo "user=$user pass=$pass DB_user=$DB_user DB_pass=$DB_pass API_token=$API_token args=$*"`+"\n")
	lines := readmeBlock(t, "### Without code: `spike run`")
	want := []string{
		"user=web pass=p1 DB_user= DB_pass= API_token= args=--port 8080\n",
		"user= pass= DB_user=web DB_pass=p1 API_token=t1 args=\n",
	}
	if len(lines) != len(want) {
		t.Fatalf("the spike run block has %d lines, want %d: %q", len(lines), len(want), lines)
	}
	for i, line := range lines {
		if got := runLine(t, dir, workload, line); got != want[i] {
			t.Errorf("README line %q: ./server printed %q, want %q", line, got, want[i])
		}
	}
}

// The README's `spike agent` configuration, template and commands run as
// the workload, with /run/app and /usr/local/bin/app in a temporary
// directory and an app that counts its SIGHUPs: the agent renders both
// files and runs both reloads, keeps db.env current after a put, and then
// --once and --check succeed.
func TestReadmeAgentBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin, workload := readmeWorkload(t, s)
	const heading = "### Files kept current: `spike agent`"
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run", "app")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	config := readmeFence(t, heading, "yaml")
	for _, p := range []string{"/run/app/", "/usr/local/bin/app"} {
		if !strings.Contains(config, p) {
			t.Fatalf("the agent configuration no longer names %s; update this test\n%s", p, config)
		}
	}
	config = strings.ReplaceAll(config, "/run/app/", runDir+"/")
	config = strings.ReplaceAll(config, "/usr/local/bin/app", filepath.Join(dir, "app"))
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The text block is db.tmpl, under a first line that names it.
	caption, tmpl, _ := strings.Cut(readmeFence(t, heading, "text"), "\n")
	if !strings.HasPrefix(caption, "# db.tmpl") {
		t.Fatalf("the template block starts with %q, want its caption # db.tmpl", caption)
	}
	if err := os.WriteFile(filepath.Join(dir, "db.tmpl"), []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads, signals := filepath.Join(dir, "reloads"), filepath.Join(dir, "signals")
	writeExec(t, filepath.Join(dir, "app"), fmt.Sprintf("echo \"$*\" >> %s\n", reloads))
	pidFile := filepath.Join(runDir, "app.pid")
	app := exec.CommandContext(t.Context(), "sh", "-c",
		fmt.Sprintf(`trap 'echo hup >> %s' HUP; echo $$ > %s.tmp && mv %s.tmp %s; while :; do sleep 0.05; done`, signals, pidFile, pidFile, pidFile))
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	waitWithin(t, 10*time.Second, "the app's pid file", func() bool { _, err := os.Stat(pidFile); return err == nil })

	lines := readmeBlock(t, heading)
	if len(lines) != 3 || strings.Contains(lines[0], "--once") || !strings.Contains(lines[1], "--once") || !strings.Contains(lines[2], "--check") {
		t.Fatalf("the agent commands: %q, want the agent, --once, --check", lines)
	}
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(b)
	}
	dbEnv, token := filepath.Join(runDir, "db.env"), filepath.Join(runDir, "api-token")
	agent := startLine(t, dir, workload, lines[0])
	waitWithin(t, time.Minute, "the agent to render both files and run both reloads", func() bool {
		return read(dbEnv) == "DB_USER=web\nDB_PASS=p1\n" && read(token) == "t1" &&
			read(reloads) == "reload\n" && read(signals) == "hup\n"
	})
	mustSpike(t, admin, "", "secret", "patch", "apps/web/db", "pass=p2")
	waitWithin(t, time.Minute, "the agent to render the put", func() bool {
		return read(dbEnv) == "DB_USER=web\nDB_PASS=p2\n"
	})
	if err := agent.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("the agent after SIGTERM: %v\nstderr: %s", err, agent.stderr.String())
	}
	for _, line := range lines[1:] {
		runLine(t, dir, workload, line)
	}
	if got := read(dbEnv); got != "DB_USER=web\nDB_PASS=p2\n" {
		t.Errorf("db.env after --once: %q", got)
	}
	for _, f := range []string{dbEnv, token} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi, err)
		}
	}
}
