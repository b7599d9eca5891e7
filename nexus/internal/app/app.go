// Package app assembles Nexus: the one place where its parts are wired
// together, used by spike-nexus's main and by the tests, so that both run
// the same assembly.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

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
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/server"
)

// App is one Nexus: its connections, background loops and listeners.
type App struct {
	cfg  Config
	log  *slog.Logger
	self string

	src      *svid.Source
	closeSrc bool
	store    *postgres.Store
	schema   int64
	reg      *prometheus.Registry
	// keeperHTTP carries the calls to Keeper; its connections are closed
	// when Nexus stops, so that Keeper need not wait for them.
	keeperHTTP *http.Client
	keeper     *keeper.Client
	trail      *audit.Trail
	sink       io.Writer
	closeLog   func()
	policies   *access.Policies
	handler    *server.Server

	ln, opsLn net.Listener
	// addr and opsAddr are where ln and opsLn listen (opsAddr: ops.Off
	// when there is no ops listener).
	addr, opsAddr string
}

// New connects Nexus to its SVID source, the database (checking its schema
// version and that Nexus's role cannot alter the audit trail) and Keeper,
// assembles the services and opens the listeners. Run serves; when New
// fails, everything it opened is closed again.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, closeLog: func() {}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()

	a.src = cfg.Source
	if a.src == nil {
		if a.src, err = svid.NewSource(ctx, cfg.SVID); err != nil {
			return nil, err
		}
		a.closeSrc = true
	}
	self, err := a.src.ID()
	if err != nil {
		return nil, fmt.Errorf("read own SVID: %w", err)
	}
	if self.TrustDomain() != cfg.TrustDomain {
		return nil, fmt.Errorf("own SVID %s is not in trust domain %s (SPIKE_TRUST_DOMAIN)", self, cfg.TrustDomain)
	}
	if want := identity.Nexus(cfg.TrustDomain); self != want {
		log.Warn("own SPIFFE ID is not the conventional Nexus ID; Keeper must be configured to accept it",
			"spiffe_id", self.String(), "conventional", want.String())
	}
	a.self = self.String()

	a.store, err = postgres.Open(ctx, cfg.DatabaseURL, postgres.Options{
		MaxConns: cfg.MaxConns, DefaultMaxVersions: cfg.MaxVersions, Pooler: cfg.DatabasePooler,
	})
	if err != nil {
		return nil, err
	}
	if a.schema, err = checkDatabase(ctx, a.store, cfg.DevAllowPrivilegedRole, log); err != nil {
		return nil, err
	}
	a.reg = ops.NewRegistry()
	m := metrics.New(a.reg)
	metrics.RegisterPool(a.reg, a.store)

	// No retries of a failed Keeper call: the client fails over to the
	// next Keeper at once instead.
	a.keeperHTTP = rpcclient.New(mtls.ClientConfig(a.src, keeperAuthorizer(cfg)), rpcclient.Options{MaxRetries: rpcclient.NoRetries})
	var keepers []keeper.Endpoint
	for _, u := range cfg.KeeperURLs {
		keepers = append(keepers, keeper.Endpoint{
			Name: u.String(),
			RPC:  keeperv1connect.NewKeeperServiceClient(a.keeperHTTP, u.String(), connect.WithInterceptors(m.KeeperCalls())),
		})
	}
	a.keeper = keeper.New(keepers, a.store, log)
	keys := envelope.NewKeys(a.keeper, a.store, cfg.DataKeyCacheTTL)
	metrics.RegisterDEKCache(a.reg, keys)
	a.keeper.Check(ctx)

	if a.sink, a.closeLog, err = openAuditSink(cfg.AuditLog); err != nil {
		return nil, err
	}
	if a.trail, err = audit.New(a.store, keys, a.sink, log); err != nil {
		return nil, err
	}
	a.trail.SetMetrics(m)
	a.policies = access.NewPolicies(a.store, keys, log)
	a.handler = server.New(server.Config{
		Admins:      cfg.Admins,
		Version:     cfg.Version,
		TokenTTL:    cfg.TokenTTL,
		MaxTokenTTL: cfg.MaxTokenTTL,
		Metrics:     m,
		Watch:       cfg.Watch,
	}, a.store, a.keeper, keys, a.policies, a.trail, log)

	if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	a.addr, a.opsAddr = a.ln.Addr().String(), ops.Off
	if cfg.OpsListen != "" {
		if a.opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			return nil, fmt.Errorf("listen on %s (SPIKE_NEXUS_OPS_LISTEN): %w", cfg.OpsListen, err)
		}
		a.opsAddr = a.opsLn.Addr().String()
	}
	return a, nil
}

// Addr is the address the API listens on.
func (a *App) Addr() string { return a.addr }

// OpsAddr is the address of the ops listener (health, readiness,
// metrics), or ops.Off.
func (a *App) OpsAddr() string { return a.opsAddr }

// Metrics is the registry the ops listener serves on /metrics.
func (a *App) Metrics() *prometheus.Registry { return a.reg }

// Policies is the policy cache, for tests that watch its freshness.
func (a *App) Policies() *access.Policies { return a.policies }

// Run serves until ctx is done, then stops gracefully and closes
// everything New opened.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	var loops sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	loops.Go(func() { a.keeper.Watch(watchCtx, a.cfg.CheckInterval) })
	loops.Go(func() { a.policies.Run(watchCtx, a.cfg.CheckInterval) })
	loops.Go(func() { a.pruneOutcomes(watchCtx) })
	loops.Go(func() { a.handler.RunWatch(watchCtx) })
	// The trail outlives ctx: requests still in flight during the graceful
	// shutdown need their records written. It stops after Serve returns.
	trailCtx, stopTrail := context.WithCancel(context.WithoutCancel(ctx))
	loops.Go(func() { a.trail.Run(trailCtx) })
	defer func() {
		stopWatch()
		stopTrail()
		loops.Wait()
	}()

	st := a.keeper.State()
	a.log.Info("nexus listening",
		"address", a.Addr(),
		"ops_address", a.OpsAddr(),
		"spiffe_id", a.self,
		"schema_version", a.schema,
		"initialised", st.Initialised,
		"unsealed", st.Unsealed,
		"keepers", len(a.cfg.KeeperURLs))
	httpSrv := mtls.NewServer(a.handler.Handler(), mtls.ServerConfig(a.src, tlsconfig.AuthorizeMemberOf(a.cfg.TrustDomain)), a.log)
	opsCfg := ops.Config{Registry: a.reg, Ready: ready(a.store, a.keeper), Log: a.log, Pprof: a.cfg.Pprof}
	return ops.ServeWith(ctx, a.opsLn, opsCfg, func(ctx context.Context) error {
		return mtls.Serve(ctx, httpSrv, a.ln)
	})
}

// close releases what New opened. The listeners may already be closed
// by a graceful shutdown: closing them again does nothing.
func (a *App) close() {
	for _, ln := range []net.Listener{a.ln, a.opsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	a.closeLog()
	if a.keeperHTTP != nil {
		a.keeperHTTP.CloseIdleConnections()
	}
	if a.store != nil {
		a.store.Close()
	}
	if a.closeSrc && a.src != nil {
		_ = a.src.Close()
	}
}

// ready reports, for /readyz, whether this Nexus can serve secrets now: a
// write would go through (postgres.Probe: a connection, the tables' write
// locks and an audit insert, rolled back, within about a second), the
// schema is the one this Nexus embeds, and a Keeper holds this database's
// keyring (as last checked, every SPIKE_KEEPER_CHECK_INTERVAL).
func ready(store *postgres.Store, kc *keeper.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := store.CheckSchema(ctx); err != nil {
			return withCause(err)
		}
		if err := store.Probe(ctx); err != nil {
			return withCause(err)
		}
		return withCause(kc.State().Err())
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
		return nil, func() {}, fmt.Errorf("open SPIKE_AUDIT_LOG: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// pruneOutcomes deletes, every hour, the outcomes kept under idempotency
// keys for longer than server.OutcomeRetention, and the change log's rows
// older than the configured retention.
func (a *App) pruneOutcomes(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if n, err := a.store.PruneOutcomes(ctx, server.OutcomeRetention); err != nil && ctx.Err() == nil {
			a.log.Warn("pruning idempotency keys failed; retrying in an hour", "error", err.Error())
		} else if n > 0 {
			a.log.Info("pruned idempotency keys", "deleted", n)
		}
		if n, err := a.store.PruneChanges(ctx, max(a.cfg.ChangeRetention, server.ChangeRetention)); err != nil && ctx.Err() == nil {
			a.log.Warn("pruning the change log failed; retrying in an hour", "error", err.Error())
		} else if n > 0 {
			a.log.Info("pruned the change log", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// keeperAuthorizer admits the configured Keeper ID, or any Keeper ID of the
// trust domain when none is configured.
func keeperAuthorizer(cfg Config) tlsconfig.Authorizer {
	if !cfg.KeeperID.IsZero() {
		return tlsconfig.AuthorizeID(cfg.KeeperID)
	}
	return tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if identity.IsKeeper(cfg.TrustDomain, id) {
			return nil
		}
		return fmt.Errorf("%s is not a Keeper ID of %s", id, cfg.TrustDomain)
	})
}
