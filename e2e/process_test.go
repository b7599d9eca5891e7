package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binDir holds the binaries built once by TestMain.
var binDir string

// result is what one run of the spike CLI produced.
type result struct {
	stdout, stderr string
	code           int
}

// spike runs the CLI with env and stdin.
func spike(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	return runBin(t, "spike", env, stdin, args...)
}

// runBin runs one of the built binaries to completion.
func runBin(t *testing.T, name string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %s %v: %v", name, args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// mustSpike runs the CLI and fails the test unless it exits 0.
func mustSpike(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	r := spike(t, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("spike %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}
