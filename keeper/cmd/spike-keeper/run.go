package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/internal/server"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/svid"
)

// run starts Keeper and serves until ctx is done. It is main without the
// process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return errors.New("spike-keeper takes no arguments; configure it with SPIKE_* environment variables")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := disableCoreDumps(); err != nil {
		return err
	}

	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return fmt.Errorf("svid source: %w", err)
	}
	defer src.Close()
	self, err := src.ID()
	if err != nil {
		return fmt.Errorf("svid: %w", err)
	}
	if self.TrustDomain() != cfg.TrustDomain {
		return fmt.Errorf("svid %s is not in trust domain %s", self, cfg.TrustDomain)
	}

	reg := ops.NewRegistry()
	keeper := server.New(server.Config{NexusID: cfg.NexusID, KDF: cfg.KDF, Logger: log, Metrics: reg})
	defer keeper.Seal()
	mux := http.NewServeMux()
	mux.Handle(keeper.Handler())
	srv := mtls.NewServer(mux, mtls.ServerConfig(src, tlsconfig.AuthorizeID(cfg.NexusID)), log)

	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var opsLn net.Listener
	opsAddr := ops.Off
	if cfg.OpsListen != nil {
		if opsLn, err = net.Listen("tcp", cfg.OpsListen.String()); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen (SPIKE_KEEPER_OPS_LISTEN): %w", err)
		}
		opsAddr = opsLn.Addr().String()
	}
	log.Info("keeper listening",
		slog.String("addr", ln.Addr().String()),
		slog.String("ops_addr", opsAddr),
		slog.String("version", version),
		slog.String("id", self.String()),
		slog.String("nexus_id", cfg.NexusID.String()))
	opsCfg := ops.Config{Registry: reg, Ready: ready(keeper), Log: log}
	err = ops.ServeWith(ctx, opsLn, opsCfg, func(ctx context.Context) error {
		return mtls.Serve(ctx, srv, ln)
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("keeper stopped")
	return nil
}

// ready reports, for /readyz, whether Keeper can wrap and unwrap data keys:
// it must hold a keyring.
func ready(keeper *server.Server) func(context.Context) error {
	return func(context.Context) error {
		if !keeper.Unsealed() {
			return errors.New("sealed: Keeper holds no root keyring until it is unsealed (spike operator unseal)")
		}
		return nil
	}
}
