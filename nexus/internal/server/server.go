// Package server implements Nexus's Connect services: it authorizes each
// call, validates input, seals and opens values through the envelope
// package and stores them through the postgres package. Domain errors are
// turned into Connect codes here and nowhere else.
package server

import (
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// maxRequestBytes bounds a request message. The largest legitimate request
// is a secret at the data size limit plus framing.
const maxRequestBytes = 1 << 20

// Config holds what the handlers need besides their dependencies.
type Config struct {
	// Admins are the SPIFFE IDs allowed to call every RPC.
	Admins []spiffeid.ID
	// Version is Nexus's build version, reported by Status.
	Version string
}

// Server implements the Nexus services.
type Server struct {
	store   *postgres.Store
	keys    *envelope.Keys
	keeper  keeperv1connect.KeeperServiceClient
	admins  admins
	version string
	log     *slog.Logger
}

// New returns a Server.
func New(cfg Config, store *postgres.Store, keys *envelope.Keys, keeper keeperv1connect.KeeperServiceClient, log *slog.Logger) *Server {
	a := make(admins, len(cfg.Admins))
	for _, id := range cfg.Admins {
		a[id] = true
	}
	return &Server{store: store, keys: keys, keeper: keeper, admins: a, version: cfg.Version, log: log}
}

// Handler returns the HTTP handler serving every Nexus service and the
// gRPC health service. It expects mtls.WithCaller to run before it.
func (s *Server) Handler() http.Handler {
	opts := []connect.HandlerOption{
		connect.WithInterceptors(s.logRequests(), s.admins),
		connect.WithReadMaxBytes(maxRequestBytes),
	}
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewOperatorServiceHandler(operator{s}, opts...))
	mux.Handle(nexusv1connect.NewSecretServiceHandler(secrets{s}, opts...))
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(
		nexusv1connect.OperatorServiceName, nexusv1connect.SecretServiceName)))
	return mux
}
