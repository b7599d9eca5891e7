//go:build linux

package harden

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"
)

// childEnv tells the test binary, run again by TestApply, to be the child
// that calls Apply; its value is the scenario. Apply changes the whole
// process for good, so it never runs in the test process itself.
const childEnv = "SPIKE_HARDEN_TEST_CHILD"

// reportPrefix marks the line on which the child prints its Report.
const reportPrefix = "harden report: "

// TestApply runs the test binary again, once per scenario, as a child
// that calls Apply (applyInChild), and checks the Report it prints.
func TestApply(t *testing.T) {
	if scenario := os.Getenv(childEnv); scenario != "" {
		applyInChild(t, scenario)
		return
	}
	t.Parallel()
	tests := []struct {
		scenario string
		// wantLocked is nil when it depends on the machine.
		wantLocked *bool
	}{
		{scenario: "as is"},
		{scenario: "memlock limited", wantLocked: new(false)},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestApply$", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"="+tt.scenario)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			r := childReport(t, out)
			if !r.NoCoreDumps || !r.NotDumpable {
				t.Errorf("report %+v: want core dumps off and not dumpable", r)
			}
			if tt.wantLocked != nil && r.MemoryLocked != *tt.wantLocked {
				t.Errorf("report %+v: MemoryLocked want %v", r, *tt.wantLocked)
			}
			if r.MemoryLocked != (len(r.Problems) == 0) {
				t.Errorf("report %+v: problems do not match what was done", r)
			}
			for _, p := range r.Problems {
				for _, advice := range []string{"swap", "IPC_LOCK", "LimitMEMLOCK=infinity", "ulimit -l"} {
					if !strings.Contains(p, advice) {
						t.Errorf("problem %q does not mention %q", p, advice)
					}
				}
			}
		})
	}
}

// childReport finds the Report the child printed.
func childReport(t *testing.T, out []byte) Report {
	t.Helper()
	for line := range bytes.Lines(out) {
		if b, ok := bytes.CutPrefix(line, []byte(reportPrefix)); ok {
			var r Report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("child report %q: %v", b, err)
			}
			return r
		}
	}
	t.Fatalf("child printed no report:\n%s", out)
	return Report{}
}

// applyInChild is TestApply in the child: it sets the scenario up, calls
// Apply, checks the process and prints the Report.
func applyInChild(t *testing.T, scenario string) {
	t.Helper()
	// Capabilities belong to a thread: keep Apply on the one set up here.
	runtime.LockOSThread()
	if scenario == "memlock limited" {
		limitMemlock(t)
	}

	r := Apply(nil)

	if got, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || got != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, %v; want 0", got, err)
	}
	var core unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil || core.Cur != 0 || core.Max != 0 {
		t.Errorf("RLIMIT_CORE = %+v, %v; want 0", core, err)
	}
	if locked := vmLocked(t) > 0; locked != r.MemoryLocked {
		t.Errorf("memory locked %v, but the report says %v", locked, r.MemoryLocked)
	}
	if r.MemoryLocked && lockAllowed(memlockLimit(t), hasIPCLock()) != nil {
		t.Error("memory locked although it was not safe to")
	}
	// Keeper's /metrics reads /proc/self, which a process that is not
	// dumpable may no longer own.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{ReportErrors: true}))
	if _, err := reg.Gather(); err != nil {
		t.Errorf("process metrics after Apply: %v", err)
	}

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString(reportPrefix + string(b) + "\n")
}

// limitMemlock gives the process the usual finite memlock limit and takes
// IPC_LOCK from this thread, as for Keeper run by an ordinary user.
func limitMemlock(t *testing.T) {
	t.Helper()
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: 64 << 10}); err != nil {
		t.Fatalf("setrlimit RLIMIT_MEMLOCK: %v", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	data[0].Effective &^= 1 << unix.CAP_IPC_LOCK
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
	if hasIPCLock() {
		t.Fatal("IPC_LOCK still effective")
	}
}

func memlockLimit(t *testing.T) uint64 {
	t.Helper()
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &l); err != nil {
		t.Fatal(err)
	}
	return l.Cur
}

// vmLocked returns the locked memory in kB from /proc/self/status.
func vmLocked(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				t.Fatalf("VmLck %q: %v", v, err)
			}
			return kb
		}
	}
	t.Fatal("no VmLck in /proc/self/status")
	return 0
}

func TestLockAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   uint64
		ipcLock bool
		ok      bool
	}{
		{"unlimited", unix.RLIM_INFINITY, false, true},
		{"IPC_LOCK", 64 << 10, true, true},
		{"IPC_LOCK and no limit at all", 0, true, true},
		{"default 8 MiB", 8 << 20, false, false},
		{"old default 64 KiB", 64 << 10, false, false},
		{"zero", 0, false, false},
		{"large but finite", 1 << 40, false, false},
	}
	for _, tt := range tests {
		err := lockAllowed(tt.limit, tt.ipcLock)
		if (err == nil) != tt.ok {
			t.Errorf("%s: lockAllowed(%d, %v) = %v, want ok %v", tt.name, tt.limit, tt.ipcLock, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errLimited) {
			t.Errorf("%s: lockAllowed = %v, want errLimited", tt.name, err)
		}
	}
}
