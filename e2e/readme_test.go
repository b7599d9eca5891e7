package e2e_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/spike-dev/spike/shared/identity"
)

// readmeBlock returns the lines of the first ```sh block after heading in
// README.md.
func readmeBlock(t *testing.T, heading string) []string {
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
	start := strings.Index(s[i:], "```sh\n")
	if start < 0 {
		t.Fatalf("no sh block after %q", heading)
	}
	body := s[i+start+len("```sh\n"):]
	end := strings.Index(body, "```")
	return strings.Split(strings.TrimSpace(body[:end]), "\n")
}

// The README's "Versioned secrets" block runs as written, in order, line
// by line, as the admin of a fresh stack with bin/ on PATH: every command
// succeeds.
func TestReadmeVersionedSecretsBlock(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	env := s.pilotEnv(t, 0, identity.Pilot(td))
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + binDir + ":" + strings.TrimPrefix(kv, "PATH=")
		}
	}
	dir := t.TempDir()
	for _, line := range readmeBlock(t, "## Versioned secrets") {
		cmd := exec.CommandContext(t.Context(), "sh", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README line %q: %v\n%s", line, err, out)
		}
	}
	if _, err := os.Stat(dir + "/pass.txt"); !os.IsNotExist(err) {
		t.Errorf("the block left pass.txt behind: %v", err)
	}
}
