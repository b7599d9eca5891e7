package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stackEnvWriter writes the env file of the stack in $SPIKE_STATE (on
// $SPIKE_NEXUS_PORT; SPIRE mode when TEST_SPIRE is set) with up.sh's
// write_stack_env and made-up database settings, as `make up` would after
// starting the stack, from the caller's environment.
const stackEnvWriter = `set -euo pipefail
. deploy/local/lib.sh
. deploy/local/stack-env.sh
USE_SPIRE=${TEST_SPIRE:-}
PG_PASSWORD_FILE=$STATE/pg/password NEXUS_ROLE=spike_nexus NEXUS_PASSWORD_FILE=$STATE/pg/nexus-password
OWNER_URL="postgresql://spike@/spike?host=$STATE/pg/run" TCP_URL="postgresql://spike@127.0.0.1:$PG_PORT/spike?sslmode=verify-full"
mkdir -p "$STATE"
write_stack_env "$STATE/env"
`

// The README's second stack, in the same shell as the first: after
// `. ./.spike/env` of stack 1 (and a SPIKE_TOKEN_FILE of the user's own),
// `SPIKE_STATE=/tmp/stack2 SPIKE_NEXUS_PORT=9553 make up` writes an env
// file that names stack 2's token file, Nexus, SVID source and database,
// never stack 1's: stack 2's init must not overwrite stack 1's token.
func TestLocalStackEnvIsItsOwn(t *testing.T) {
	t.Parallel()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name           string
		spire1, spire2 bool
	}{
		{name: "dev CA after dev CA"},
		{name: "dev CA after SPIRE", spire1: true},
		{name: "SPIRE after dev CA", spire2: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writer := filepath.Join(dir, "write-env.sh")
			if err := os.WriteFile(writer, []byte(stackEnvWriter), 0o600); err != nil {
				t.Fatal(err)
			}
			spire := func(on bool) string {
				if on {
					return "1"
				}
				return ""
			}
			stack1, stack2 := filepath.Join(dir, "stack1"), filepath.Join(dir, "stack2")
			script := `set -euo pipefail
SPIKE_STATE="$STACK1" TEST_SPIRE="$SPIRE1" bash "$WRITER"
. "$STACK1/env"
SPIKE_STATE="$STACK2" SPIKE_NEXUS_PORT=9553 TEST_SPIRE="$SPIRE2" bash "$WRITER"
. "$STACK2/env"
for v in SPIKE_TOKEN_FILE SPIKE_NEXUS_URL SPIKE_SVID_CERT SPIKE_SVID_KEY SPIKE_TRUST_BUNDLE SPIFFE_ENDPOINT_SOCKET SPIKE_DATABASE_URL SPIKE_DATABASE_OWNER_URL SPIKE_DATABASE_TCP_URL; do
	printf '%s=%s\n' "$v" "${!v-(unset)}"
done
`
			cmd := exec.CommandContext(t.Context(), "bash", "-c", script)
			cmd.Dir = repo
			cmd.Env = append(baseEnv(),
				"SPIKE_TOKEN_FILE="+filepath.Join(dir, "my-token"),
				"WRITER="+writer, "STACK1="+stack1, "STACK2="+stack2,
				"SPIRE1="+spire(tt.spire1), "SPIRE2="+spire(tt.spire2))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			want := []string{
				"SPIKE_TOKEN_FILE=" + stack2 + "/token",
				"SPIKE_NEXUS_URL=https://127.0.0.1:9553",
				"SPIKE_SVID_CERT=" + stack2 + "/svid/pilot/svid.pem",
				"SPIKE_SVID_KEY=" + stack2 + "/svid/pilot/key.pem",
				"SPIKE_TRUST_BUNDLE=" + stack2 + "/svid/pilot/bundle.pem",
				"SPIFFE_ENDPOINT_SOCKET=(unset)",
				"SPIKE_DATABASE_URL=postgresql://spike@/spike?host=" + stack2 + "/pg/run",
				"SPIKE_DATABASE_OWNER_URL=postgresql://spike@/spike?host=" + stack2 + "/pg/run",
				"SPIKE_DATABASE_TCP_URL=postgresql://spike@127.0.0.1:55432/spike?sslmode=verify-full",
			}
			if tt.spire2 {
				want[2], want[3], want[4] = "SPIKE_SVID_CERT=(unset)", "SPIKE_SVID_KEY=(unset)", "SPIKE_TRUST_BUNDLE=(unset)"
				want[5] = "SPIFFE_ENDPOINT_SOCKET=unix://" + stack2 + "/spire/agent.sock"
			}
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stack 2's env, sourced after stack 1's (-want +got):\n%s", diff)
			}
		})
	}
}
