package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/sys/unix"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/server"
)

// run wires Nexus together and serves until ctx is done.
func run(ctx context.Context, _ []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	// Cached data keys live in this process: keep them out of core dumps.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		log.Warn("cannot disable core dumps", "error", err)
	}

	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return err
	}
	defer src.Close()
	self, err := src.ID()
	if err != nil {
		return fmt.Errorf("read own SVID: %w", err)
	}
	if self.TrustDomain() != cfg.TrustDomain {
		return fmt.Errorf("own SVID %s is not in trust domain %s (SPIKE_TRUST_DOMAIN)", self, cfg.TrustDomain)
	}
	if want := identity.Nexus(cfg.TrustDomain); self != want {
		log.Warn("own SPIFFE ID is not the conventional Nexus ID; Keeper must be configured to accept it",
			"spiffe_id", self.String(), "conventional", want.String())
	}

	store, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.Options{MaxConns: cfg.MaxConns, DefaultMaxVersions: cfg.MaxVersions})
	if err != nil {
		return err
	}
	defer store.Close()
	schema, err := store.Migrate(ctx)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry()
	m := metrics.New(reg)
	metrics.RegisterPool(reg, store)

	keeperHTTP := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(cfg.KeeperID)),
		rpcclient.Options{MaxRetries: 2, MinWait: 50 * time.Millisecond, MaxWait: 500 * time.Millisecond})
	keeper := keeperv1connect.NewKeeperServiceClient(keeperHTTP, cfg.KeeperURL.String(),
		connect.WithInterceptors(m.KeeperCalls()))
	keys := envelope.NewKeys(keeper, store, log)
	metrics.RegisterDEKCache(reg, keys)
	st := keys.Check(ctx)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { keys.Watch(watchCtx, cfg.CheckInterval) })
	// Runs before store.Close (deferred earlier): the watcher uses the store.
	defer watching.Wait()
	defer stopWatch()

	sink, closeSink, err := openAuditSink(cfg.AuditLog)
	if err != nil {
		return err
	}
	defer closeSink()
	trail, err := audit.New(store, keys, sink, log)
	if err != nil {
		return err
	}
	trail.SetMetrics(m)
	// The trail outlives ctx: requests still in flight during the graceful
	// shutdown need their records written. It stops after Serve returns.
	trailCtx, stopTrail := context.WithCancel(context.WithoutCancel(ctx))
	watching.Go(func() { trail.Run(trailCtx) })
	defer stopTrail()

	policies := access.NewPolicies(store, keys, log)
	watching.Go(func() { policies.Run(watchCtx, cfg.CheckInterval) })
	srv := server.New(server.Config{
		Admins:      cfg.Admins,
		Version:     version,
		TokenTTL:    cfg.TokenTTL,
		MaxTokenTTL: cfg.MaxTokenTTL,
		Metrics:     m,
	}, store, keys, keeper, policies, trail, log)
	httpSrv := mtls.NewServer(srv.Handler(), mtls.ServerConfig(src, tlsconfig.AuthorizeMemberOf(cfg.TrustDomain)), log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var opsLn net.Listener
	opsAddr := ops.Off
	if cfg.OpsListen != "" {
		if opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (SPIKE_NEXUS_OPS_LISTEN): %w", cfg.OpsListen, err)
		}
		opsAddr = opsLn.Addr().String()
	}
	log.Info("nexus listening",
		"address", ln.Addr().String(),
		"ops_address", opsAddr,
		"spiffe_id", self.String(),
		"schema_version", schema,
		"initialised", st.Initialised,
		"unsealed", st.Unsealed,
		"keeper", cfg.KeeperURL.String())
	opsCfg := ops.Config{Registry: reg, Ready: ready(store, keys), Log: log, Pprof: cfg.Pprof}
	return ops.ServeWith(ctx, opsLn, opsCfg, func(ctx context.Context) error {
		return mtls.Serve(ctx, httpSrv, ln)
	})
}

// ready reports, for /readyz, whether this Nexus can serve secrets: the
// database answers, its schema is the one this Nexus embeds, and Keeper
// holds this database's keyring (as last checked, every
// SPIKE_KEEPER_CHECK_INTERVAL).
func ready(store *postgres.Store, keys *envelope.Keys) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return withCause(err)
		}
		if err := store.CheckSchema(ctx); err != nil {
			return withCause(err)
		}
		return withCause(keys.State().Err())
	}
}

// withCause spells out a domain error's cause, which callers of the API
// never see, for the operator reading /readyz.
func withCause(err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) && fe.Err != nil {
		return fmt.Errorf("%s: %w", fe.Msg, fe.Err)
	}
	return err
}

// openAuditSink opens where committed audit records are also written as
// JSON lines, for log shipping: nowhere (""), standard output ("-"), or a
// file, appended to, created with mode 0600.
func openAuditSink(dest string) (io.Writer, func(), error) {
	switch dest {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open SPIKE_AUDIT_LOG: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}
