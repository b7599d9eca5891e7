// Package server implements Nexus's Connect services: it authorizes each
// call, validates input, seals and opens values through the envelope
// package and stores them through the postgres package. Domain errors are
// turned into Connect codes here and nowhere else.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/engine"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// maxRequestBytes bounds a request message. The largest legitimate request
// is a secret at the data size limit plus framing.
const maxRequestBytes = 1 << 20

// Config holds what the handlers need besides their dependencies.
type Config struct {
	// Admins are the admin SPIFFE IDs: with a valid admin token they may
	// call every RPC.
	Admins []spiffeid.ID
	// Version is Nexus's build version, reported by Status.
	Version string
	// TokenTTL is the lifetime of admin tokens that ask for none;
	// MaxTokenTTL caps what a login may ask for.
	TokenTTL, MaxTokenTTL time.Duration
	// Metrics records each request; nil records nothing.
	Metrics *metrics.Nexus
	// Watch bounds WatchSecrets.
	Watch WatchConfig
}

// Server implements the Nexus services.
type Server struct {
	store    *postgres.Store
	engine   *engine.Engine
	keys     *envelope.Keys
	keeper   *keeper.Client
	admins   map[spiffeid.ID]bool
	policies *access.Policies
	trail    *audit.Trail
	tokens   *access.Tokens
	backoff  *access.Backoff
	version  string
	metrics  *metrics.Nexus
	log      *slog.Logger
	// watch is this process's one reader of the change log.
	watch *watchHub
	// streamSlots holds, per streaming procedure, a one-slot channel: one
	// backup, verify or restore at a time.
	streamSlots sync.Map
}

// New returns a Server. The caller keeps the Keeper state and the policies
// fresh (keeper.Client.Watch, access.Policies.Run).
func New(cfg Config, store *postgres.Store, kc *keeper.Client, keys *envelope.Keys,
	policies *access.Policies, trail *audit.Trail, log *slog.Logger,
) *Server {
	admins := make(map[spiffeid.ID]bool, len(cfg.Admins))
	for _, id := range cfg.Admins {
		admins[id] = true
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 8 * time.Hour
	}
	if cfg.MaxTokenTTL < cfg.TokenTTL {
		cfg.MaxTokenTTL = max(cfg.TokenTTL, 24*time.Hour)
	}
	return &Server{
		store:    store,
		engine:   engine.New(store, keys, store.DefaultMaxVersions()),
		keys:     keys,
		keeper:   kc,
		admins:   admins,
		policies: policies,
		trail:    trail,
		tokens:   access.NewTokens(store, keys, cfg.TokenTTL, cfg.MaxTokenTTL),
		backoff:  access.NewBackoff(),
		version:  cfg.Version,
		metrics:  cfg.Metrics,
		log:      log,
		watch:    newWatchHub(store, cfg.Watch, log),
	}
}

// RunWatch reads the change log for WatchSecrets streams until ctx is
// done.
func (s *Server) RunWatch(ctx context.Context) { s.watch.Run(ctx) }

// Handler returns the HTTP handler serving every Nexus service and the
// gRPC health service. It expects mtls.WithCaller to run before it. Every
// RPC goes through the pipeline in pipeline.go.
func (s *Server) Handler() http.Handler {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(maxRequestBytes),
		// No compression: a response that compresses a secret together
		// with what the caller chose (its path) would leak the secret
		// through its length, and gzip of these small messages costs more
		// CPU than it saves.
		connect.WithCompression("gzip", nil, nil),
	}
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewOperatorServiceHandler(operatorServer{s}, opts...))
	mux.Handle(nexusv1connect.NewSecretServiceHandler(secretServer{s}, opts...))
	mux.Handle(nexusv1connect.NewPolicyServiceHandler(policyServer{s}, opts...))
	mux.Handle(nexusv1connect.NewAuditServiceHandler(auditServer{s}, opts...))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(
		nexusv1connect.OperatorServiceName, nexusv1connect.SecretServiceName, nexusv1connect.PolicyServiceName,
		nexusv1connect.AuditServiceName)))
	return s.auditRefused(streamDeadlines(mux))
}
