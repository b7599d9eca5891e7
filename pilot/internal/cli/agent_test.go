package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// spike agent refuses a bad command line or configuration before it
// connects to anything, saying what to change.
func TestAgentRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("templates:\n  - contents: x\n    destination: out\n    mode: \"0644\"\n    siganl: HUP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("templates:\n  - contents: x\n    destination: out\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"agent"}, "--config FILE is required"},
		{"single-dash config", []string{"agent", "-config", good}, "-config: use --config (two dashes)"},
		{"single-dash once", []string{"agent", "--config", good, "-once"}, "-once: use --once (two dashes)"},
		{"single-dash check", []string{"agent", "--config", good, "-check"}, "-check: use --check (two dashes)"},
		{"once and check", []string{"agent", "--config", good, "--once", "--check"}, "[check once] were all set"},
		{"unknown field", []string{"agent", "--config", bad}, "line 5: field siganl not found"},
		{"missing file", []string{"agent", "--config", filepath.Join(dir, "nope.yaml")}, "read the agent configuration: open " + dir + "/nope.yaml"},
		{"argument", []string{"agent", "--config", good, "extra"}, `takes no arguments, got "extra"`},
		{"not rendered", []string{"agent", "--config", good, "--check"}, "template " + dir + "/out: not rendered yet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			p := &Program{Version: "test", Getenv: envFunc(nil), Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
			if code := p.Run(t.Context(), tt.args); code != 1 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("spike %s: exit %d, stderr %q; want exit 1 saying %q", strings.Join(tt.args, " "), code, stderr.String(), tt.want)
			}
		})
	}
}
