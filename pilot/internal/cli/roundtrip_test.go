package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// runSpike runs one command line against the Nexus at url and returns
// stdout, stderr and the exit code.
func runSpike(t *testing.T, url, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	p := &Program{
		Version: "test",
		Getenv:  envFunc(nil),
		Stdin:   strings.NewReader(stdin),
		Stdout:  &stdout,
		Stderr:  &stderr,
		dial:    dialPlain(url),
	}
	code := p.Run(t.Context(), args)
	return stdout.String(), stderr.String(), code
}

// mustRunSpike is runSpike for a command line that must succeed.
func mustRunSpike(t *testing.T, url, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, code := runSpike(t, url, stdin, args...)
	if code != 0 {
		t.Fatalf("spike %q: exit code %d, stderr %q", args, code, stderr)
	}
	return stdout
}

// evalEnv evaluates env output in a real POSIX shell and returns the value
// the shell then holds in variable name, exactly.
func evalEnv(t *testing.T, envOutput, name string) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("this test needs a POSIX sh on PATH: %v", err)
	}
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte(envOutput), 0o600); err != nil {
		t.Fatal(err)
	}
	// name is one of the test's own keys, a plain shell name.
	cmd := exec.CommandContext(t.Context(), sh, "-c", `eval "$(cat "$1")"; printf %s "$`+name+`"`, "sh", envFile)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v: %s", err, stderr.String())
	}
	return string(out)
}

// TestTrickyValueRoundTrip checks that a value with newlines, '=', quotes,
// a backslash, a tab and non-ASCII text comes back byte for byte from
// `put k=@file` through `get --field k`, `get -o env` evaluated by sh,
// -o json and -o yaml.
func TestTrickyValueRoundTrip(t *testing.T) {
	t.Parallel()
	values := map[string]string{
		"tricky":      tricky,
		"quotes_only": `'''"""`,
		"no_newline":  "é 日本 🔑",
		"empty":       "",
		"ends_quote":  "x'",
	}
	dir := t.TempDir()
	args := []string{"secret", "put", "apps/tricky"}
	for k, v := range values {
		p := filepath.Join(dir, k)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, k+"=@"+p)
	}

	fake := &fakeNexus{}
	url := fake.serve(t)
	if got := mustRunSpike(t, url, "", args...); got != "stored apps/tricky version 1\n" {
		t.Fatalf("put printed %q", got)
	}
	put, ok := fake.received()[0].(*nexusv1.PutSecretRequest)
	if !ok {
		t.Fatalf("first request is %T, want a put", fake.received()[0])
	}
	if diff := cmp.Diff(values, put.GetData()); diff != "" {
		t.Fatalf("put sent other data (-want +got):\n%s", diff)
	}

	env := mustRunSpike(t, url, "", "secret", "get", "apps/tricky", "-o", "env")
	var doc secretDoc
	if err := json.Unmarshal([]byte(mustRunSpike(t, url, "", "secret", "get", "apps/tricky", "-o", "json")), &doc); err != nil {
		t.Fatalf("decode -o json: %v", err)
	}
	var ydoc secretDoc
	if err := yaml.Unmarshal([]byte(mustRunSpike(t, url, "", "secret", "get", "apps/tricky", "-o", "yaml")), &ydoc); err != nil {
		t.Fatalf("decode -o yaml: %v", err)
	}
	for k, want := range values {
		t.Run(k, func(t *testing.T) {
			if got := mustRunSpike(t, url, "", "secret", "get", "apps/tricky", "--field", k); got != want {
				t.Errorf("--field %s = %q, want %q", k, got, want)
			}
			if got := evalEnv(t, env, k); got != want {
				t.Errorf("-o env evaluated by sh: $%s = %q, want %q", k, got, want)
			}
			if got := doc.Data[k]; got != want {
				t.Errorf("-o json: %s = %q, want %q", k, got, want)
			}
			if got := ydoc.Data[k]; got != want {
				t.Errorf("-o yaml: %s = %q, want %q", k, got, want)
			}
		})
	}
}

// TestStdinRoundTrip checks k=- and a JSON object on stdin against the
// fake, byte for byte.
func TestStdinRoundTrip(t *testing.T) {
	t.Parallel()
	url := (&fakeNexus{}).serve(t)
	mustRunSpike(t, url, tricky, "secret", "put", "apps/a", "user=admin", "v=-")
	if got := mustRunSpike(t, url, "", "secret", "get", "apps/a", "--field", "v"); got != tricky {
		t.Errorf("k=-: got %q, want %q", got, tricky)
	}
	mustRunSpike(t, url, `{"v":`+jsonString(tricky)+`}`, "secret", "put", "apps/b", "-")
	if got := mustRunSpike(t, url, "", "secret", "get", "apps/b", "--field", "v"); got != tricky {
		t.Errorf("JSON on stdin: got %q, want %q", got, tricky)
	}
}

func TestWriteEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    map[string]string
		want    string
		wantErr string
	}{
		{name: "empty", data: map[string]string{}, want: ""},
		{name: "sorted, quoted", data: map[string]string{"b": "2", "A": "1", "_x9": "it's"}, want: "A='1'\n_x9='it'\\''s'\nb='2'\n"},
		{
			name:    "one bad key",
			data:    map[string]string{"ok": "1", "db-pass": "s3cr3t"},
			wantErr: `cannot print the secret as shell variables: key "db-pass" is not a valid shell variable name (letters, digits and '_', not starting with a digit); use -o json or --field instead`,
		},
		{
			name:    "several bad keys",
			data:    map[string]string{"1x": "s3cr3t", "a.b": "s3cr3t", "é": "s3cr3t", "fine": "1"},
			wantErr: `cannot print the secret as shell variables: keys "1x", "a.b", "é" are not valid shell variable names (letters, digits and '_', not starting with a digit); use -o json or --field instead`,
		},
		{
			name:    "NUL byte",
			data:    map[string]string{"v": "s3\x00cr3t"},
			wantErr: `cannot print the secret as shell variables: the value of key "v" holds a NUL byte, which a shell variable cannot hold; use -o json instead`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := writeEnv(&buf, tt.data)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("writeEnv error = %v, want %q", err, tt.wantErr)
				}
				if buf.Len() > 0 {
					t.Errorf("writeEnv printed %q before failing", buf.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("writeEnv mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
