package e2e_test

import (
	"bufio"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
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
	cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, "spike"), "run", "--secret", "apps/run/api", "--",
		"sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Env = workload
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
	// The trap is set before the echo: the signal cannot come too early.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("after SIGTERM: %v; want spike to exit 42, the command's code", err)
	}
}
