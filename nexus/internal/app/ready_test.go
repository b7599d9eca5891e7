package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/ops"
	"github.com/spike-dev/spike/shared/testkit/pgtest"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// statusKeeper is a Keeper that only answers Status, holding keyringID
// (nil: sealed).
type statusKeeper struct {
	keeperv1connect.KeeperServiceClient
	keyringID []byte
}

func (k statusKeeper) Status(context.Context, *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	return connect.NewResponse(&keeperv1.StatusResponse{Unsealed: k.keyringID != nil, KeyringId: k.keyringID}), nil
}

func TestReady(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, err := postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	keyringID := bytes.Repeat([]byte{7}, 16)
	unsealed := keeper.New([]keeper.Endpoint{{Name: "k", RPC: statusKeeper{keyringID: keyringID}}}, store, log)
	sealed := keeper.New([]keeper.Endpoint{{Name: "k", RPC: statusKeeper{}}}, store, log)

	check := func(name string, kc *keeper.Client, want string) {
		t.Helper()
		kc.Check(ctx)
		err := ready(store, kc)(ctx)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: ready = %v, want nil", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: ready = %v, want an error mentioning %q", name, err, want)
		}
	}
	check("not migrated", unsealed, "schema version is 0")
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	check("not initialised", unsealed, "not initialised")
	if err := store.CreateKeyring(ctx, audittest.Record(t, store), keeper.Keyring{ID: keyringID, KDFParams: []byte{1}, Ciphertext: []byte{2}}); err != nil {
		t.Fatal(err)
	}
	check("Keeper sealed", sealed, "sealed")
	check("ready", unsealed, "")
	store.Close()
	check("database closed", unsealed, "database")
}

// /readyz tells the truth: for each way this Nexus can be unable to
// complete requests it answers 503 naming the cause within 2 seconds, and
// 200 again within 2 seconds after the cause is gone.
func TestReadinessFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	// Durable: the database is crashed below, after the other causes were
	// undone; an undone cause must not be lost with unflushed commits.
	cl, err := pgtest.StartDurable(filepath.Join(t.TempDir(), "pg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	db := cl.NewRoles(t, "")
	ctx := t.Context()
	migrateAs(t, db)
	store, err := postgres.Open(ctx, db.Serving, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	keyringID := bytes.Repeat([]byte{7}, 16)
	if err := store.CreateKeyring(ctx, audittest.Record(t, store), keeper.Keyring{ID: keyringID, KDFParams: []byte{1}, Ciphertext: []byte{2}}); err != nil {
		t.Fatal(err)
	}
	kc := keeper.New([]keeper.Endpoint{{Name: "k", RPC: statusKeeper{keyringID: keyringID}}}, store, slog.New(slog.DiscardHandler))
	kc.Check(ctx)
	srv := httptest.NewServer(ops.Handler(ops.Config{Ready: ready(store, kc)}))
	t.Cleanup(srv.Close)

	admin, err := pgx.Connect(ctx, db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var locker pgx.Tx
	causes := []struct {
		name, reason string
		start, stop  func()
	}{
		{"audit inserts refused", "permission denied for table audit_log",
			func() { exec("REVOKE INSERT ON audit_log FROM " + db.ServingRole) },
			func() { exec("GRANT INSERT ON audit_log TO " + db.ServingRole) }},
		{"a lock held against writes", "lock timeout",
			func() {
				var err error
				if locker, err = admin.Begin(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := locker.Exec(ctx, "LOCK TABLE secrets IN EXCLUSIVE MODE"); err != nil {
					t.Fatal(err)
				}
			},
			func() { _ = locker.Rollback(ctx) }},
		{"no connection to be had", "too many connections",
			func() {
				exec("ALTER ROLE " + db.ServingRole + " CONNECTION LIMIT 0")
				exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + db.ServingRole + "'")
			},
			func() { exec("ALTER ROLE " + db.ServingRole + " CONNECTION LIMIT -1") }},
		{"database down", "database unavailable",
			func() { cl.Crash() },
			func() {
				if err := cl.Restart(); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, c := range causes {
		waitReadiness(t, srv.URL, c.name+" (before)", http.StatusOK, "")
		c.start()
		waitReadiness(t, srv.URL, c.name, http.StatusServiceUnavailable, c.reason)
		c.stop()
		if c.name == "database down" {
			if admin, err = pgx.Connect(ctx, db.Admin); err != nil {
				t.Fatal(err)
			}
		}
		waitReadiness(t, srv.URL, c.name+" (after)", http.StatusOK, "")
	}
}

// waitReadiness polls /readyz until it answers want (with reason in its
// body), failing the test if that takes more than 2 seconds.
func waitReadiness(t *testing.T, url, what string, want int, reason string) {
	t.Helper()
	start := time.Now()
	var code int
	var body string
	for time.Since(start) < 2*time.Second {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		if code == want && strings.Contains(body, reason) {
			t.Logf("%s: %d after %v: %s", what, code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: /readyz still answers %d %q after 2s; want %d mentioning %q", what, code, body, want, reason)
}
