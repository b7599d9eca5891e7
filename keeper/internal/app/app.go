// Package app is Keeper assembled: its configuration, read from the
// environment, and the App that serves Keeper's API and ops endpoints. The
// spike-keeper command and tests run the same App.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/internal/server"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// App is Keeper assembled from a Config: its SVID, its Connect API over
// SPIFFE mTLS admitting only Nexus, and its ops endpoints. Its listeners are
// open from New on, so Addr is known before Run serves on them.
type App struct {
	cfg    Config
	log    *slog.Logger
	src    *svid.Source
	self   spiffeid.ID
	keeper *server.Server
	peers  []server.Peer
	// peerHTTP carries the calls to peers; closed when Keeper stops.
	peerHTTP *http.Client
	reg      *prometheus.Registry
	api      *http.Server
	ln       net.Listener
	opsLn    net.Listener // nil when the ops listener is off
}

// New checks Keeper's SVID against cfg, builds its API and opens its
// listeners on cfg.Listen and cfg.OpsListen; port 0 picks a free port,
// which Addr and OpsAddr report. log receives Keeper's logs (nil discards
// them). Run must follow: it releases what New acquired.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return nil, fmt.Errorf("svid source: %w", err)
	}
	defer func() {
		if err != nil {
			_ = src.Close()
		}
	}()
	self, err := src.ID()
	if err != nil {
		return nil, fmt.Errorf("svid: %w", err)
	}
	if self.TrustDomain() != cfg.TrustDomain {
		return nil, fmt.Errorf("svid %s is not in trust domain %s", self, cfg.TrustDomain)
	}
	if len(cfg.Peers) > 0 && !identity.IsKeeper(cfg.TrustDomain, self) {
		return nil, fmt.Errorf("svid %s is not a Keeper ID (spiffe://%s/spike/keeper/<name>): its peers would refuse it (SPIKE_KEEPER_PEERS)", self, cfg.TrustDomain)
	}
	if identity.IsKeeper(cfg.TrustDomain, cfg.NexusID) {
		return nil, fmt.Errorf("SPIKE_KEEPER_NEXUS_ID %s is a Keeper ID: Nexus must not be able to ask for the root key", cfg.NexusID)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	var opsLn net.Listener
	if cfg.OpsListen != nil {
		if opsLn, err = lc.Listen(ctx, "tcp", cfg.OpsListen.String()); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("listen (SPIKE_KEEPER_OPS_LISTEN): %w", err)
		}
	}

	reg := ops.NewRegistry()
	keeper := server.New(server.Config{
		NexusID: cfg.NexusID, TrustDomain: cfg.TrustDomain, KDF: cfg.KDF, Logger: log, Metrics: reg,
	})
	mux := http.NewServeMux()
	mux.Handle(keeper.Handler())
	mux.Handle(keeper.PeerHandler())
	// Nexus calls KeeperService, Keepers call PeerService; each handler
	// checks that its caller is the right one.
	callers := tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if id == cfg.NexusID || identity.IsKeeper(cfg.TrustDomain, id) {
			return nil
		}
		return fmt.Errorf("%s is neither Nexus nor a Keeper", id)
	})
	isKeeper := tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if identity.IsKeeper(cfg.TrustDomain, id) {
			return nil
		}
		return fmt.Errorf("%s is not a Keeper", id)
	})
	a := &App{
		cfg:    cfg,
		log:    log,
		src:    src,
		self:   self,
		keeper: keeper,
		reg:    reg,
		api:    mtls.NewServer(mux, mtls.ServerConfig(src, callers), log),
		ln:     ln,
		opsLn:  opsLn,
	}
	if len(cfg.Peers) > 0 {
		// No retries: the re-seed loop asks again every interval.
		a.peerHTTP = rpcclient.New(mtls.ClientConfig(src, isKeeper), rpcclient.Options{MaxRetries: rpcclient.NoRetries})
		for _, u := range cfg.Peers {
			a.peers = append(a.peers, server.Peer{
				Name:   u.String(),
				Client: keeperv1connect.NewPeerServiceClient(a.peerHTTP, u.String()),
			})
		}
	}
	return a, nil
}

// Addr returns the address the API listens on.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// OpsAddr returns the address of the ops endpoints, or nil when they are
// off.
func (a *App) OpsAddr() net.Addr {
	if a.opsLn == nil {
		return nil
	}
	return a.opsLn.Addr()
}

// Run serves until ctx is done, then shuts down gracefully: in-flight
// requests finish, the listeners close and the keyring is dropped, so a
// new App starts sealed. It returns nil after a clean shutdown. Call it
// once.
func (a *App) Run(ctx context.Context) error {
	defer a.src.Close()
	defer a.keeper.Drop()
	if a.peerHTTP != nil {
		defer a.peerHTTP.CloseIdleConnections()
	}
	opsAddr := ops.Off
	if a.opsLn != nil {
		opsAddr = a.opsLn.Addr().String()
	}
	a.log.Info("keeper listening",
		slog.String("addr", a.ln.Addr().String()),
		slog.String("ops_addr", opsAddr),
		slog.String("id", a.self.String()),
		slog.String("nexus_id", a.cfg.NexusID.String()),
		slog.Int("peers", len(a.peers)))
	reseedCtx, stopReseed := context.WithCancel(ctx)
	reseedDone := make(chan struct{})
	go func() {
		defer close(reseedDone)
		a.keeper.Reseed(reseedCtx, a.peers, a.cfg.ReseedInterval)
	}()
	defer func() { stopReseed(); <-reseedDone }()
	opsCfg := ops.Config{Registry: a.reg, Ready: a.ready, Log: a.log}
	err := ops.ServeWith(ctx, a.opsLn, opsCfg, func(ctx context.Context) error {
		return mtls.Serve(ctx, a.api, a.ln)
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	a.log.Info("keeper stopped")
	return nil
}

// ready reports, for /readyz, whether Keeper can wrap and unwrap data keys:
// it must hold a keyring.
func (a *App) ready(context.Context) error {
	if !a.keeper.Unsealed() {
		return errors.New("sealed: Keeper holds no root keyring until it is unsealed (spike operator unseal) or a peer Keeper gives it")
	}
	return nil
}
