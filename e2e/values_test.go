package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spike-dev/spike/shared/identity"
)

// A value with newlines, '=', quotes, a backslash, a tab and non-ASCII text
// survives the real CLI, Nexus, Keeper and PostgreSQL byte for byte.
func TestValueRoundTripsByteExact(t *testing.T) {
	st := startStack(t, 1)
	st.initialise(t)
	pilot := st.pilotEnv(t, 0, identity.Pilot(td))
	value := "line one\nkey=value == \"double\" 'single' back\\slash\ttab é 日本 🔑\n\n"
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}

	mustSpike(t, pilot, "", "secret", "put", "apps/tricky", "k=@"+file, "plain=x")
	if got := mustSpike(t, pilot, "", "secret", "get", "apps/tricky", "--field", "k"); got != value {
		t.Fatalf("get --field k = %q, want %q", got, value)
	}
	// The same value read from stdin, then through -o env evaluated by sh.
	mustSpike(t, pilot, value, "secret", "put", "apps/tricky", "k=-")
	envOut := mustSpike(t, pilot, "", "secret", "get", "apps/tricky", "-o", "env")
	cmd := exec.Command("sh", "-c", `eval "$1"; printf %s "$k"`, "sh", envOut)
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	if string(got) != value {
		t.Fatalf("-o env through sh = %q, want %q", got, value)
	}
	if out := mustSpike(t, pilot, "", "secret", "get", "apps/tricky", "--version", "1", "--field", "plain"); out != "x" {
		t.Fatalf("version 1 field plain = %q", out)
	}
	r := spike(t, pilot, "", "secret", "put", "apps/tricky", "--cas", "1", "k=v")
	if r.code != 2 || !strings.Contains(r.stderr, "check-and-set failed: apps/tricky is at version 2, you expected 1") {
		t.Fatalf("stale cas: exit %d, stderr %q", r.code, r.stderr)
	}
}
