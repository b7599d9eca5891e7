//go:build benchbackup

package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// TestBenchBackup is `make bench-backup` (build tag benchbackup: never part
// of make test): BENCH_SECRETS secrets (default 100000) of three versions
// each, backed up with spike operator backup and restored with spike
// operator restore into a fresh database; it reports throughput and size,
// and into BENCH_OUT (Markdown) when set.
func TestBenchBackup(t *testing.T) {
	secrets := 100000
	if v := os.Getenv("BENCH_SECRETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BENCH_SECRETS=%q: want a positive number", v)
		}
		secrets = n
	}
	src := startStack(t, 1)
	src.initialise(t)
	admin := src.pilotEnv(t, 0, identity.Pilot(td))
	client := src.secretsClient(t, 0)

	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(secrets) {
					return
				}
				for v := 1; v <= 3; v++ {
					_, err := client.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
						Path: fmt.Sprintf("bench/s%07d", i), Data: map[string]string{"value": fmt.Sprintf("%064d", i*10+int64(v))},
					}))
					if err != nil && failed.Add(1) < 5 {
						t.Errorf("put: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	populate := time.Since(start)
	if failed.Load() > 0 {
		t.Fatalf("%d puts failed", failed.Load())
	}
	t.Logf("populated %d secrets x 3 versions in %s (%.0f puts/s)", secrets, populate.Round(time.Millisecond), float64(3*secrets)/populate.Seconds())

	file := filepath.Join(t.TempDir(), "bench.backup")
	start = time.Now()
	out := runLong(t, admin, "", "operator", "backup", "--file", file)
	backupTime := time.Since(start)
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	rows := int64(0)
	if _, err := fmt.Sscanf(out[strings.Index(out, ": ")+2:], "%d rows", &rows); err != nil {
		t.Fatalf("backup printed %q", out)
	}
	start = time.Now()
	runLong(t, admin, "", "operator", "backup", "verify", file)
	verifyTime := time.Since(start)

	dst := startStackOn(t, pgtest.NewRoles(t, ""), 1)
	restored := dst.pilotEnv(t, 0, identity.Pilot(td))
	start = time.Now()
	runLong(t, restored, "correct horse battery\n", "operator", "restore", file)
	restoreTime := time.Since(start)
	mustSpike(t, restored, "correct horse battery\n", "login")
	if got := getJSON(t, restored, fmt.Sprintf("bench/s%07d", secrets-1)); got.Version != 3 {
		t.Errorf("the last secret after the restore: %+v, want version 3", got)
	}

	mib := float64(info.Size()) / (1 << 20)
	report := fmt.Sprintf(`# Backup and restore throughput

Measured by `+"`make bench-backup`"+` (e2e/bench_backup_test.go) on %s:
%d secrets x 3 versions, one Nexus and one Keeper on a local PostgreSQL,
each step through the `+"`spike`"+` CLI over mutual TLS.

| step | time | rows/s | MiB/s |
|---|---|---|---|
| backup (%d rows, %.1f MiB, %d bytes per secret) | %s | %.0f | %.1f |
| verify | %s | %.0f | %.1f |
| restore (one transaction) | %s | %.0f | %.1f |

Populating took %s (%.0f puts/s, 16 writers).
`, time.Now().UTC().Format("2006-01-02"), secrets,
		rows, mib, info.Size()/int64(secrets), backupTime.Round(time.Millisecond), float64(rows)/backupTime.Seconds(), mib/backupTime.Seconds(),
		verifyTime.Round(time.Millisecond), float64(rows)/verifyTime.Seconds(), mib/verifyTime.Seconds(),
		restoreTime.Round(time.Millisecond), float64(rows)/restoreTime.Seconds(), mib/restoreTime.Seconds(),
		populate.Round(time.Second), float64(3*secrets)/populate.Seconds())
	t.Log("\n" + report)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runLong runs the CLI to completion within an hour and fails the test
// unless it exits 0.
func runLong(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "spike"), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("spike %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
