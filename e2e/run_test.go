package e2e_test

import (
	"bufio"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/ptytest"
)

// spike run as a workload, with its own SVID and a policy: the command
// sees the secrets' keys as variables (prefixed when asked, values exact),
// spike exits with its exit code and passes signals on; names that
// collide or are not variable names, and secrets the workload may not
// read, stop it before anything starts.
func TestSpikeRun(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "apps/run/db", "user=alice", "pass=p w'd\"$x")
	mustSpike(t, admin, "", "secret", "put", "apps/run/api", "token=t1")
	mustSpike(t, admin, "", "secret", "put", "apps/run/odd", "a-b=1")
	mustSpike(t, admin, "", "secret", "put", "apps/other/x", "token=nope")
	runner := spiffeid.RequireFromString("spiffe://spike.local/app/runner")
	mustSpike(t, admin, "", "policy", "put", "runner", "--spiffe-id", runner.String(), "--path", "apps/run/**", "--perm", "read")
	workload := append(s.pilotEnv(t, 0, runner), "INHERITED=kept", "token=replaced")

	r := spike(t, workload, "", "run", "--secret", "apps/run/db:DB_", "--secret", "apps/run/api", "--",
		"sh", "-c", `printf '%s|%s|%s|%s' "$DB_user" "$DB_pass" "$token" "$INHERITED"; exit 7`)
	if want := `alice|p w'd"$x|t1|kept`; r.stdout != want || r.code != 7 {
		t.Errorf("spike run: exit %d, stdout %q, stderr %q; want exit 7 and %q", r.code, r.stdout, r.stderr, want)
	}

	marker := filepath.Join(t.TempDir(), "started")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"collision", []string{"--secret", "apps/run/api", "--secret", "apps/run/api"}, 1, "both set token"},
		{"not a variable name", []string{"--secret", "apps/run/odd"}, 1, `"a-b" is not a valid environment variable name`},
		{"not allowed", []string{"--secret", "apps/other/x"}, 2, "no policy grants read"},
		{"no dash", []string{"--secret", "apps/run/api", "true"}, 1, "put the command after --"},
	} {
		args := append([]string{"run"}, tt.args...)
		if tt.name != "no dash" {
			args = append(args, "--", "touch", marker)
		}
		r := spike(t, workload, "", args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d saying %q", tt.name, r.code, r.stderr, tt.code, tt.want)
		}
	}
	if r := exec.Command("test", "-e", marker).Run(); r == nil {
		t.Error("a refused spike run started its command")
	}

	// Signals reach the command; its exit code is spike's.
	// The trap is set before the echo: the signal cannot come too early.
	cmd := startRun(t, workload, false, `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("after SIGTERM: %v; want spike to exit 42, the command's code", err)
	}

	checkGroupSignal(t, workload)
	checkTerminal(t, workload)
}

// startRun starts `spike run --secret apps/run/api -- sh -c script args...`
// as the workload, in a process group of its own when ownGroup, and waits
// for the command to print "ready".
func startRun(t *testing.T, workload []string, ownGroup bool, script string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, "spike"),
		append([]string{"run", "--secret", "apps/run/api", "--", "sh", "-c", script}, args...)...)
	cmd.Env = workload
	if ownGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("the command said %q (%v), want ready", line, err)
	}
	return cmd
}

// checkGroupSignal: a signal sent to spike's whole process group, as a
// supervisor does, reaches the command once (the command runs in a group
// of its own, and spike passes the signal on). spike is stopped while the
// group is signalled, so that a command in spike's group would get the
// signal first from the sender and only later from spike: two signals that
// cannot merge into one pending signal.
func checkGroupSignal(t *testing.T, workload []string) {
	t.Helper()
	got := filepath.Join(t.TempDir(), "sigints")
	// spike leads a group of its own: signalling it spares this test.
	cmd := startRun(t, workload, true, `trap 'echo int >> "$0"' INT; trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done`, got)
	pgid := cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // time for a command in spike's group to see it
	if err := syscall.Kill(pgid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 10*time.Second, "the command's SIGINT", func() bool { return countLines(t, got) > 0 })
	time.Sleep(time.Second) // time for a second SIGINT, which must not come
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("after SIGTERM: %v; want spike to exit 3, the command's code", err)
	}
	if n := countLines(t, got); n != 1 {
		t.Errorf("SIGINT to spike's process group: the command got %d SIGINTs, want 1", n)
	}
}

// checkTerminal runs spike on a pseudo-terminal, under a shell that is
// the session leader: while the command runs its own group is the
// terminal's foreground group (not spike's), it reads what is typed, and
// Ctrl-C reaches it alone (not spike, not the shell); afterwards the
// shell's group, which is spike's, is the foreground group again.
func checkTerminal(t *testing.T, workload []string) {
	t.Helper()
	master, tty := ptytest.Open(t)
	// Fields 5 and 8 of /proc/PID/stat: the process group and the
	// terminal's foreground group.
	const stat = `read -r _ _ _ _ pg _ _ fg _ < /proc/$$/stat; `
	child := stat + `read -r _ _ _ _ spg _ < /proc/$PPID/stat; echo "child $$ $pg $fg $spg"; ` +
		`echo ready-read; read -r line; echo "read:$line"; ` +
		`trap "echo got-int; exit 5" INT; echo ready-int; while :; do sleep 0.05; done`
	script := `"$0" run --secret apps/run/api -- sh -c '` + child + `'; echo "spike-exit $?"; ` + stat + `echo "after $$ $pg $fg"`
	cmd := exec.CommandContext(t.Context(), "sh", "-c", script, filepath.Join(binDir, "spike"))
	cmd.Env = workload
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(master)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	next := func(prefix string) []string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the terminal closed before a line with %q", prefix)
				}
				// The terminal echoes what is typed (Ctrl-C as ^C)
				// before the output that follows.
				if i := strings.Index(l, prefix); i >= 0 {
					return strings.Fields(l[i:])
				}
			case <-timeout:
				t.Fatalf("no line with %q on the terminal", prefix)
			}
		}
	}
	write := func(s string) {
		t.Helper()
		if _, err := master.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	c := next("child ") // child PID PGRP FOREGROUND SPIKE-PGRP
	if c[1] != c[2] || c[3] != c[2] || c[4] == c[2] {
		t.Errorf("while the command runs: pid %s, group %s, foreground group %s, spike's group %s; "+
			"want the command leading its own group, in the foreground", c[1], c[2], c[3], c[4])
	}
	next("ready-read")
	write("typed\n")
	if r := next("read:"); strings.Join(r, " ") != "read:typed" {
		t.Errorf("the command read %q from the terminal, want typed", r)
	}
	next("ready-int")
	write("\x03") // Ctrl-C
	next("got-int")
	if r := next("spike-exit "); r[1] != "5" {
		t.Errorf("after Ctrl-C: spike exited %s, want 5 (the command's code)", r[1])
	}
	a := next("after ") // after SHELL-PID PGRP FOREGROUND
	if a[2] != a[1] || a[3] != a[1] {
		t.Errorf("after spike: the shell (pid %s) has group %s, foreground group %s; want its own group in the foreground", a[1], a[2], a[3])
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the shell: %v", err)
	}
}
