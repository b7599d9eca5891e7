package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/keepertest"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
	"github.com/spike-dev/spike/shared/testkit/pgtest"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/app"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	td       = spiffeid.RequireTrustDomainFromString("spike.local")
	nexusID  = identity.Nexus(td)
	keeperID = identity.Keeper(td, "1")
	adminID  = identity.Pilot(td)
)

// stack is a Nexus (the real app, as spike-nexus runs it) served over real
// mTLS, backed by a fresh database and a Keeper running in-process, also
// reached over real mTLS.
type stack struct {
	t  testing.TB
	ca *devca.CA
	// dsn connects to the stack's database as the superuser; nexusDSN as
	// the role Nexus serves as.
	dsn      string
	nexusDSN string
	url      string
	keeper   *keepertest.Keeper
	// policies is Nexus's policy cache.
	policies *access.Policies
	// metrics holds Nexus's metrics, as its ops listener serves them.
	metrics *prometheus.Registry
	// token is the admin token from init; admin clients send it.
	token string
	// configure, when set, changes Nexus's configuration after it is read
	// from the environment (for bounds the environment cannot set as low
	// as a test needs).
	configure func(*app.Config)
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStack(t testing.TB) *stack {
	t.Helper()
	return newStackAs(t, "")
}

// newStackAs is newStack with Nexus serving as role ("" means a random
// name), which spike-nexus migrate grants its privileges to, so that a
// test can take privileges away.
func newStackAs(t testing.TB, role string) *stack {
	t.Helper()
	return newStackLogging(t, role, quietLog())
}

// newStackLogging is newStackAs with Nexus's request log going to log.
func newStackLogging(t testing.TB, role string, log *slog.Logger) *stack {
	t.Helper()
	return newStackConfigured(t, role, log, nil)
}

// newStackConfigured is newStackLogging with configure applied to Nexus's
// configuration.
func newStackConfigured(t testing.TB, role string, log *slog.Logger, configure func(*app.Config)) *stack {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewRoles(t, role)
	s := &stack{t: t, ca: ca, dsn: db.Admin, nexusDSN: db.Serving, configure: configure}
	s.keeper = keepertest.Start(t, ca, keepertest.Options{ID: keeperID, NexusID: nexusID})
	s.migrate(db)
	nexus := s.startNexus(s.nexusDSN, log)
	s.url = "https://" + nexus.Addr()
	s.policies = nexus.Policies()
	s.metrics = nexus.Metrics()
	return s
}

// startNexus runs a Nexus on dsn and the stack's Keeper until the test
// ends, configured as spike-nexus is, through its environment.
func (s *stack) startNexus(dsn string, log *slog.Logger) *app.App {
	t := s.t
	t.Helper()
	env := map[string]string{
		"SPIKE_DATABASE_URL":          dsn,
		"SPIKE_DB_MAX_CONNS":          "8",
		"SPIKE_NEXUS_LISTEN":          "127.0.0.1:0",
		"SPIKE_NEXUS_OPS_LISTEN":      "off",
		"SPIKE_KEEPER_URL":            s.keeper.URL(),
		"SPIKE_KEEPER_ID":             keeperID.String(),
		"SPIKE_KEEPER_CHECK_INTERVAL": "100ms",
		"SPIKE_WATCH_HEARTBEAT":       "1s",
	}
	cfg, err := app.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source = s.source(nexusID)
	cfg.Version = "test"
	if s.configure != nil {
		s.configure(&cfg)
	}
	nexus, err := app.New(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nexus.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("nexus: %v", err)
		}
	})
	return nexus
}

func (s *stack) source(id spiffeid.ID) *svid.Source {
	s.t.Helper()
	src, err := s.ca.Source(id)
	if err != nil {
		s.t.Fatal(err)
	}
	return src
}

// httpClient returns a client calling Nexus as id. Its connections are
// closed when the test ends, before Nexus stops, so that Nexus's graceful
// shutdown need not wait for them.
func (s *stack) httpClient(id spiffeid.ID) *http.Client {
	c := rpcclient.New(mtls.ClientConfig(s.source(id), tlsconfig.AuthorizeID(nexusID)),
		rpcclient.Options{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: 10 * time.Millisecond})
	s.t.Cleanup(c.CloseIdleConnections)
	return c
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

// migrate does what spike-nexus migrate does, configured as it is: it
// migrates the database as its owner and grants Nexus's role its
// privileges.
func (s *stack) migrate(db pgtest.Roles) {
	s.t.Helper()
	env := map[string]string{"SPIKE_DATABASE_OWNER_URL": db.Owner, "SPIKE_DATABASE_ROLE": db.ServingRole}
	cfg, err := app.LoadMigrateConfig(func(k string) string { return env[k] })
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := app.Migrate(s.t.Context(), cfg, quietLog()); err != nil {
		s.t.Fatal(err)
	}
}

// restartKeeper stops Keeper and starts it again: it comes back sealed.
func (s *stack) restartKeeper() {
	s.keeper.Restart()
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
