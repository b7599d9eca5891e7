// Command spike-keeper runs SPIKE Keeper: it holds the root keyring in
// memory and wraps data keys for Nexus over SPIFFE mutual TLS.
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spike-keeper: %v\n", err)
		os.Exit(1)
	}
}
