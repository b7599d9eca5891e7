package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/spike-dev/spike/nexus/internal/app"
)

// usage is printed for arguments spike-nexus does not know.
const usage = `usage:
  spike-nexus           serve (configuration from SPIKE_* environment variables)
  spike-nexus migrate   migrate the database as its owner (SPIKE_DATABASE_OWNER_URL)
                        and grant the serving role (SPIKE_DATABASE_ROLE) what it needs, then exit
  spike-nexus floor     serve the protocol floor of make bench: GetSecret and PutSecret doing
                        no work, with Nexus's TLS and HTTP settings (SPIKE_FLOOR_LISTEN,
                        SPIKE_FLOOR_OPS_LISTEN, SPIKE_FLOOR_VALUE_SIZE; the SVID as for serving)`

// run is main without the process: configuration from getenv, logs to
// stderr, serving until ctx is done, or migrating with args "migrate".
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	switch {
	case len(args) == 0:
		return serve(ctx, getenv, stderr)
	case len(args) == 1 && args[0] == "migrate":
		return migrate(ctx, getenv, stderr)
	case len(args) == 1 && args[0] == "floor":
		return floor(ctx, getenv, stderr)
	}
	return fmt.Errorf("unknown arguments %q\n%s", args, usage)
}

// migrate is spike-nexus migrate.
func migrate(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := app.LoadMigrateConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	_, err = app.Migrate(ctx, cfg, log)
	return err
}

// floor is spike-nexus floor: the protocol floor `make bench` measures
// SPIKE against (app.Floor).
func floor(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := app.LoadFloorConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return app.Floor(ctx, cfg, slog.New(slog.NewJSONHandler(stderr, nil)))
}

// serve is spike-nexus serving.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
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
