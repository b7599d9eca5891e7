// Command spike-keeper runs SPIKE Keeper: it holds the root keyring in
// memory and wraps data keys for Nexus over SPIFFE mutual TLS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spike-dev/spike/keeper/internal/app"
	"github.com/spike-dev/spike/keeper/internal/harden"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spike-keeper: %v\n", err)
		os.Exit(1)
	}
}

// run is main without the process: it reads the configuration, makes the
// process safe to hold keys and runs Keeper until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 {
		return errors.New("spike-keeper takes no arguments; configure it with SPIKE_* environment variables")
	}
	cfg, err := app.LoadConfig(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	// Keys stay out of core files, other processes and (where allowed)
	// swap. A Keeper that cannot keep them out of core files does not
	// start; one that cannot lock its memory says so and runs.
	if h := harden.Apply(log); runtime.GOOS == "linux" && (!h.NoCoreDumps || !h.NotDumpable) {
		return fmt.Errorf("cannot keep keys out of core dumps: %s", strings.Join(h.Problems, "; "))
	}
	log.Info("spike-keeper starting", slog.String("version", version))
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
