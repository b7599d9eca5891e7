package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spike-dev/spike/keeper/keepertest"
	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

var td = spiffeid.RequireTrustDomainFromString("spike.local")

// envOf turns a map into a getenv.
func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// migrateAs runs spike-nexus migrate's code, configured as it is, for db.
func migrateAs(t *testing.T, db pgtest.Roles) {
	t.Helper()
	cfg, err := LoadMigrateConfig(envOf(map[string]string{
		"SPIKE_DATABASE_OWNER_URL": db.Owner,
		"SPIKE_DATABASE_ROLE":      db.ServingRole,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(t.Context(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

// serveConfig is Nexus's configuration, read as spike-nexus reads it, for
// a Nexus on dsn with keeperURL and the extra settings in more.
func serveConfig(t *testing.T, ca *devca.CA, dsn, keeperURL string, more map[string]string) Config {
	t.Helper()
	env := map[string]string{
		"SPIKE_DATABASE_URL":          dsn,
		"SPIKE_DB_MAX_CONNS":          "4",
		"SPIKE_NEXUS_LISTEN":          "127.0.0.1:0",
		"SPIKE_NEXUS_OPS_LISTEN":      "off",
		"SPIKE_KEEPER_URL":            keeperURL,
		"SPIKE_KEEPER_CHECK_INTERVAL": "100ms",
	}
	for k, v := range more {
		env[k] = v
	}
	cfg, err := LoadConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source, err = ca.Source(identity.Nexus(td)); err != nil {
		t.Fatal(err)
	}
	cfg.Version = "test"
	return cfg
}

// Migrated by its owner, then served by a role of its own: Nexus
// initialises, stores and reads a secret, prunes its audit trail (through
// the SECURITY DEFINER functions) and the trail still verifies.
func TestMigrateThenServe(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	keeper := keepertest.Start(t, ca, keepertest.Options{})
	db := pgtest.NewRoles(t, "")
	migrateAs(t, db)
	nexus, err := New(t.Context(), serveConfig(t, ca, db.Serving, keeper.URL(), nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("serve as the serving role: %v", err)
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

	src, err := ca.Source(identity.Pilot(td))
	if err != nil {
		t.Fatal(err)
	}
	httpc := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))), rpcclient.Options{MaxRetries: 1})
	t.Cleanup(httpc.CloseIdleConnections)
	url := "https://" + nexus.Addr()
	init, err := nexusv1connect.NewOperatorServiceClient(httpc, url).Init(t.Context(),
		connect.NewRequest(&nexusv1.InitRequest{Password: []byte("correct horse battery")}))
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	bearer := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+init.Msg.GetToken().GetToken())
			return next(ctx, req)
		}
	}))
	secrets := nexusv1connect.NewSecretServiceClient(httpc, url, bearer)
	auditc := nexusv1connect.NewAuditServiceClient(httpc, url, bearer)
	if _, err := secrets.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/x", Data: map[string]string{"k": "v"}})); err != nil {
		t.Fatalf("put: %v", err)
	}
	get := func() {
		t.Helper()
		got, err := secrets.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
		if err != nil || got.Msg.GetSecret().GetData()["k"] != "v" {
			t.Fatalf("get = %v, %v; want k=v", got, err)
		}
	}
	get()
	// Recent records cannot be pruned, until the owner allows it.
	_, err = auditc.PruneAuditTrail(t.Context(), connect.NewRequest(&nexusv1.PruneAuditTrailRequest{
		Before: timestamppb.New(time.Now())}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "younger than 01:00:00 cannot be pruned") {
		t.Fatalf("prune of fresh records: %v, want InvalidArgument", err)
	}
	ownerExec(t, db.Owner, `UPDATE audit_settings SET min_prune_age = interval '0'`)
	pruned, err := auditc.PruneAuditTrail(t.Context(), connect.NewRequest(&nexusv1.PruneAuditTrailRequest{
		Before: timestamppb.New(time.Now())}))
	if err != nil {
		t.Fatalf("prune as the serving role: %v", err)
	}
	if pruned.Msg.GetDeleted() < 3 || pruned.Msg.GetCheckpoints() == 0 {
		t.Fatalf("prune = %v; want init, put and get pruned behind a checkpoint", pruned.Msg)
	}
	get()
	v, err := auditc.VerifyAuditTrail(t.Context(), connect.NewRequest(&nexusv1.VerifyAuditTrailRequest{}))
	if err != nil || !v.Msg.GetOk() {
		t.Fatalf("verify after prune = %v, %v; want ok", v, err)
	}
}

// A serving Nexus does not migrate: on a database nobody migrated it
// refuses to start and names the command that does.
func TestServeRefusesUnmigrated(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewRoles(t, "")
	_, err = New(t.Context(), serveConfig(t, ca, db.Serving, "https://127.0.0.1:1", nil), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "schema version 0 is behind") ||
		!strings.Contains(err.Error(), "spike-nexus migrate") || !strings.Contains(err.Error(), "SPIKE_DATABASE_OWNER_URL") {
		t.Fatalf("New on an unmigrated database: %v; want a refusal naming spike-nexus migrate", err)
	}
	// Nor did it create anything: the serving role could not have.
	conn, err := pgx.Connect(t.Context(), db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("%d tables after the refusal (%v), want 0", tables, err)
	}
}

// Nexus refuses to serve as a role that could alter the audit trail, and
// says what the role can do and how to fix it; with the dev flag it serves
// and warns.
func TestServeRefusesPrivilegedRole(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		// grant is run as the superuser, %[1]s the serving role, %[2]s
		// the owner role; undo (if any) runs when the test ends.
		grant, undo string
		// asOwner connects Nexus as the owner role instead.
		asOwner bool
		want    string
	}{
		{name: "proper serving role"},
		{name: "superuser", grant: `ALTER ROLE %[1]s SUPERUSER`, want: "is a superuser"},
		{name: "bypassrls", grant: `ALTER ROLE %[1]s BYPASSRLS`, want: "has BYPASSRLS"},
		{name: "createrole", grant: `ALTER ROLE %[1]s CREATEROLE`, want: "has CREATEROLE"},
		{name: "member of a role that writes server files", grant: `GRANT pg_write_server_files TO %[1]s`,
			want: "is a member of pg_write_server_files"},
		{name: "the owner itself", asOwner: true, want: "owns table audit_log"},
		{name: "member of the owner", grant: `GRANT %[2]s TO %[1]s`, want: "owns table audit_log"},
		{name: "owns one table", grant: `ALTER TABLE secrets OWNER TO %[1]s`, want: "owns table secrets"},
		{name: "owns a function", grant: `ALTER FUNCTION audit_prune_unauthenticated(timestamptz) OWNER TO %[1]s`,
			want: "owns function audit_prune_unauthenticated"},
		{name: "update audit_log", grant: `GRANT UPDATE ON audit_log TO %[1]s`, want: "has UPDATE on audit_log"},
		{name: "delete audit_log", grant: `GRANT DELETE ON audit_log TO %[1]s`, want: "has DELETE on audit_log"},
		{name: "truncate audit_log", grant: `GRANT TRUNCATE ON audit_log TO %[1]s`, want: "has TRUNCATE on audit_log"},
		{name: "update audit_checkpoints", grant: `GRANT UPDATE ON audit_checkpoints TO %[1]s`, want: "has UPDATE on audit_checkpoints"},
		{name: "delete audit_checkpoints", grant: `GRANT DELETE ON audit_checkpoints TO %[1]s`, want: "has DELETE on audit_checkpoints"},
		{name: "truncate any table", grant: `GRANT TRUNCATE ON secrets TO %[1]s`, want: "has TRUNCATE on secrets"},
		{name: "trigger on audit_log", grant: `GRANT TRIGGER ON audit_log TO %[1]s`, want: "has TRIGGER on audit_log"},
		{name: "update through PUBLIC", grant: `GRANT UPDATE ON audit_log TO PUBLIC`, want: "has UPDATE on audit_log"},
		{name: "create in schema", grant: `GRANT CREATE ON SCHEMA public TO %[1]s`, want: "may CREATE in schema public"},
		{name: "owns the database", grant: `ALTER DATABASE %[3]s OWNER TO %[1]s`, want: "owns the database"},
		{name: "may turn triggers off", grant: `GRANT SET ON PARAMETER session_replication_role TO %[1]s`,
			undo: `REVOKE SET ON PARAMETER session_replication_role FROM %[1]s`, want: "may SET session_replication_role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewRoles(t, "")
			migrateAs(t, db)
			admin, err := pgx.Connect(t.Context(), db.Admin)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = admin.Close(context.Background()) })
			var dbName string
			if err := admin.QueryRow(t.Context(), `SELECT current_database()`).Scan(&dbName); err != nil {
				t.Fatal(err)
			}
			sql := func(s string) string {
				if !strings.Contains(s, "%") {
					return s
				}
				return fmt.Sprintf(s, pgx.Identifier{db.ServingRole}.Sanitize(), pgx.Identifier{db.OwnerRole}.Sanitize(),
					pgx.Identifier{dbName}.Sanitize())
			}
			if tc.grant != "" {
				if _, err := admin.Exec(t.Context(), sql(tc.grant)); err != nil {
					t.Fatalf("%s: %v", sql(tc.grant), err)
				}
			}
			if tc.undo != "" {
				// Before the roles are dropped: cleanups run last first.
				t.Cleanup(func() {
					if _, err := admin.Exec(context.Background(), sql(tc.undo)); err != nil {
						t.Errorf("%s: %v", sql(tc.undo), err)
					}
				})
			}
			dsn := db.Serving
			if tc.asOwner {
				dsn = db.Owner
			}

			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			a, err := New(t.Context(), serveConfig(t, ca, dsn, "https://127.0.0.1:1", nil), log)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New as a proper serving role: %v", err)
				}
				a.close()
				if strings.Contains(logs.String(), "UNSAFE") {
					t.Errorf("a proper serving role was warned about: %s", logs.String())
				}
				return
			}
			if err == nil {
				a.close()
				t.Fatalf("New served as a role that %s", tc.want)
			}
			for _, part := range []string{"can alter the audit trail", tc.want, "spike-nexus migrate", "SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE=true"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("New: %v\nwant it to say %q", err, part)
				}
			}

			a, err = New(t.Context(), serveConfig(t, ca, dsn, "https://127.0.0.1:1",
				map[string]string{"SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE": "true"}), log)
			if err != nil {
				t.Fatalf("New with SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE=true: %v", err)
			}
			a.close()
			if !strings.Contains(logs.String(), "level=WARN msg=\"UNSAFE") || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("with the dev flag, the log does not warn that the role %s:\n%s", tc.want, logs.String())
			}
		})
	}
}

// ownerExec runs sql on the database at dsn.
func ownerExec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
