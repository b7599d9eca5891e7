package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/spike-dev/spike/nexus/internal/app"
)

// run is main without the process: configuration from getenv, logs to
// stderr, serving until ctx is done.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := app.LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	cfg.Version = version
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	// Cached data keys live in this process: keep them out of core dumps.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		log.Warn("cannot disable core dumps", "error", err)
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
