package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/metrics"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/server"
)

// keeperBin is the spike-keeper binary built by TestMain: these tests talk
// to a real Keeper process.
var keeperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spike-nexus-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := proctest.Build(dir, "github.com/spike-dev/spike/keeper/cmd/spike-keeper"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	keeperBin = filepath.Join(dir, "spike-keeper")
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

var (
	td       = spiffeid.RequireTrustDomainFromString("spike.local")
	nexusID  = identity.Nexus(td)
	keeperID = identity.Keeper(td, "1")
	adminID  = identity.Pilot(td)
)

// stack is a Nexus served over real mTLS, backed by a fresh database and an
// in-process Keeper that is also reached over real mTLS.
type stack struct {
	t          *testing.T
	ca         *devca.CA
	dsn        string
	url        string
	keeper     *proctest.Process
	keeperAddr string
	keys       *envelope.Keys
	policies   *access.Policies
	trail      *audit.Trail
	// metrics holds Nexus's metrics, as its ops listener serves them.
	metrics *prometheus.Registry
	// token is the admin token from init; admin clients send it.
	token string
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve serves h over mTLS until the test ends and returns its https URL.
func serve(t *testing.T, h http.Handler, tlsConf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mtls.NewServer(h, tlsConf, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mtls.Serve(ctx, srv, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return "https://" + ln.Addr().String()
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackAs(t, "")
}

// newStackAs is newStack with Nexus connecting to the database as role (a
// role created for it with the usual privileges; "" means the superuser),
// so that a test can take privileges away.
func newStackAs(t *testing.T, role string) *stack {
	t.Helper()
	return newStackLogging(t, role, quietLog())
}

// newStackLogging is newStackAs with Nexus's request log going to log.
func newStackLogging(t *testing.T, role string, log *slog.Logger) *stack {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, ca: ca, dsn: pgtest.NewDatabase(t)}

	keeperSVID, err := ca.WriteSVID(t.TempDir(), keeperID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.keeperAddr = proctest.FreeAddr(t)
	s.keeper = proctest.Start(t, keeperBin, []string{
		"SPIKE_KEEPER_LISTEN=" + s.keeperAddr,
		"SPIKE_SVID_CERT=" + keeperSVID.CertFile,
		"SPIKE_SVID_KEY=" + keeperSVID.KeyFile,
		"SPIKE_TRUST_BUNDLE=" + keeperSVID.BundleFile,
		"SPIKE_KEEPER_KDF_TIME=1",
		"SPIKE_KEEPER_KDF_MEMORY_KIB=1024",
		"SPIKE_KEEPER_KDF_THREADS=1",
		"SPIKE_KEEPER_OPS_LISTEN=off",
	})
	s.keeper.WaitListening(s.keeperAddr)
	keeperURL := "https://" + s.keeperAddr

	ctx := t.Context()
	nexusDSN := s.dsn
	if role != "" {
		nexusDSN = s.createRole(role)
	}
	store, err := postgres.Open(ctx, nexusDSN, postgres.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	nexusSrc := s.source(nexusID)
	keeperHTTP := rpcclient.New(mtls.ClientConfig(nexusSrc, tlsconfig.AuthorizeID(keeperID)),
		rpcclient.Options{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: 10 * time.Millisecond})
	s.metrics = prometheus.NewRegistry()
	m := metrics.New(s.metrics)
	keeper := keeperv1connect.NewKeeperServiceClient(keeperHTTP, keeperURL, connect.WithInterceptors(m.KeeperCalls()))
	s.keys = envelope.NewKeys(keeper, store, quietLog())
	metrics.RegisterPool(s.metrics, store)
	metrics.RegisterDEKCache(s.metrics, s.keys)
	s.keys.Check(ctx)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); s.keys.Watch(watchCtx, 100*time.Millisecond) }()
	t.Cleanup(func() { stopWatch(); <-watchDone })
	s.policies = access.NewPolicies(store, s.keys, quietLog())
	policiesDone := make(chan struct{})
	go func() { defer close(policiesDone); s.policies.Run(watchCtx, 100*time.Millisecond) }()
	t.Cleanup(func() { stopWatch(); <-policiesDone })
	s.trail, err = audit.New(store, s.keys, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	s.trail.SetMetrics(m)
	trailCtx, stopTrail := context.WithCancel(context.Background())
	trailDone := make(chan struct{})
	go func() { defer close(trailDone); s.trail.Run(trailCtx) }()
	t.Cleanup(func() { stopTrail(); <-trailDone })
	srv := server.New(server.Config{Admins: []spiffeid.ID{adminID}, Version: "test", MaxTokenTTL: 24 * time.Hour, Metrics: m},
		store, s.keys, keeper, s.policies, s.trail, log)
	s.url = serve(t, srv.Handler(), mtls.ServerConfig(nexusSrc, tlsconfig.AuthorizeMemberOf(td)))
	return s
}

func (s *stack) source(id spiffeid.ID) *svid.Source {
	s.t.Helper()
	src, err := s.ca.Source(id)
	if err != nil {
		s.t.Fatal(err)
	}
	return src
}

func (s *stack) httpClient(id spiffeid.ID) *http.Client {
	return rpcclient.New(mtls.ClientConfig(s.source(id), tlsconfig.AuthorizeID(nexusID)),
		rpcclient.Options{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: 10 * time.Millisecond})
}

// withToken sends token as the admin token, when not empty.
func withToken(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}))
}

// tokenFor is the token a client acting as id sends: the admin's.
func (s *stack) tokenFor(id spiffeid.ID) string {
	if id == adminID {
		return s.token
	}
	return ""
}

func (s *stack) operator(id spiffeid.ID) nexusv1connect.OperatorServiceClient {
	return s.operatorWith(id, s.tokenFor(id))
}

func (s *stack) operatorWith(id spiffeid.ID, token string) nexusv1connect.OperatorServiceClient {
	return nexusv1connect.NewOperatorServiceClient(s.httpClient(id), s.url, withToken(token))
}

func (s *stack) secrets(id spiffeid.ID) nexusv1connect.SecretServiceClient {
	return s.secretsWith(id, s.tokenFor(id))
}

func (s *stack) secretsWith(id spiffeid.ID, token string) nexusv1connect.SecretServiceClient {
	return nexusv1connect.NewSecretServiceClient(s.httpClient(id), s.url, withToken(token))
}

func (s *stack) policyClient() nexusv1connect.PolicyServiceClient {
	return nexusv1connect.NewPolicyServiceClient(s.httpClient(adminID), s.url, withToken(s.token))
}

// createRole migrates the database as the superuser, creates role with
// the privileges Nexus needs, and returns the DSN that connects as it.
func (s *stack) createRole(role string) string {
	s.t.Helper()
	ctx := s.t.Context()
	admin, err := postgres.Open(ctx, s.dsn, postgres.Options{MaxConns: 1})
	if err != nil {
		s.t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Migrate(ctx); err != nil {
		s.t.Fatal(err)
	}
	db := s.db()
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN", role),
		fmt.Sprintf("GRANT CREATE, USAGE ON SCHEMA public TO %s", role),
		fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s", role),
		fmt.Sprintf("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s", role),
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			s.t.Fatalf("%s: %v", sql, err)
		}
	}
	s.t.Cleanup(func() {
		_, _ = db.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %s; DROP ROLE %s", role, role))
	})
	return strings.Replace(s.dsn, "user=postgres", "user="+role, 1)
}

// restartKeeper kills Keeper and starts it again: it comes back sealed.
func (s *stack) restartKeeper() {
	s.keeper.Kill()
	s.keeper.Restart()
	s.keeper.WaitListening(s.keeperAddr)
}

// db opens a direct connection to the stack's database, as an attacker with
// access to storage would.
func (s *stack) db() *pgx.Conn {
	s.t.Helper()
	conn, err := pgx.Connect(s.t.Context(), s.dsn)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
