// Command spike-nexus serves SPIKE's secrets API over SPIFFE mTLS. It is
// the only PostgreSQL client and seals every value through Keeper before it
// reaches the database. "spike-nexus migrate" migrates the database as its
// owner and grants the serving role its privileges, then exits.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spike-nexus:", err)
		os.Exit(1)
	}
}

// tuneGC trades memory that Nexus has to spare for CPU: the garbage
// collector runs when the heap has grown by 300% rather than Go's default
// 100% (per request Nexus allocates much and keeps little). In a container
// with a memory limit (cgroup v2 memory.max), a soft limit at three
// quarters of it makes Go collect as often as it must before the limit is
// reached. GOGC and GOMEMLIMIT in the environment win, as for any Go
// program.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return
	}
	if limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && limit > 0 {
		debug.SetMemoryLimit(limit / 4 * 3)
	}
}
