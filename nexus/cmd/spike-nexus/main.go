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
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spike-nexus:", err)
		os.Exit(1)
	}
}
