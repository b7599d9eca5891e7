package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
	"github.com/spike-dev/spike/shared/testkit/proctest"
)

// Two Nexus replicas serve through pgbouncer in transaction mode with two
// server connections, so their transactions interleave on shared server
// sessions: every command works, policy changes reach the other replica
// without LISTEN, and a storm of concurrent idempotent writers loses and
// duplicates nothing. The session limits are the serving role's defaults:
// without them Nexus refuses to start, saying what to run. Migrations
// connect directly.
func TestThroughPgBouncer(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	bouncer := pgtest.StartBouncer(t, db.Serving, pgtest.BouncerOptions{PoolSize: 2, Users: []string{db.ServingRole}})
	throughBouncer := []string{
		"SPIKE_DATABASE_URL=" + bouncer.DSN(db.Serving),
		"SPIKE_DATABASE_POOLER=pgbouncer-transaction",
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgbouncer log:\n%s", bouncer.LogTail())
		}
	})

	// The owner may not alter the serving role: migrate says what to run.
	r := runBin(t, "spike-nexus", env(baseEnv(), []string{
		"SPIKE_DATABASE_OWNER_URL=" + db.Owner,
		"SPIKE_DATABASE_ROLE=" + db.ServingRole,
	}), "", "migrate")
	if r.code != 0 || !strings.Contains(r.stderr, `ALTER ROLE \"`+db.ServingRole+`\" IN DATABASE`) {
		t.Fatalf("migrate: exit %d, want 0 and the statements to run in its log\nstderr: %s", r.code, r.stderr)
	}
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	r = runBin(t, "spike-nexus", env(baseEnv(), svidEnv(t, ca, identity.Nexus(td)),
		[]string{"SPIKE_NEXUS_LISTEN=" + proctest.FreeAddr(t)}, throughBouncer), "")
	if r.code == 0 || !strings.Contains(r.stderr, "statement_timeout is off") || !strings.Contains(r.stderr, "RECONNECT") {
		t.Fatalf("Nexus through pgbouncer without the limits as role defaults: exit %d, want a refusal naming them\nstderr: %s", r.code, r.stderr)
	}
	// The DBA runs them, and pgbouncer opens new server sessions.
	dba, err := pgx.Connect(t.Context(), db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, setting := range []string{"statement_timeout = '15s'", "lock_timeout = '10s'", "idle_in_transaction_session_timeout = '30s'"} {
		sql := "ALTER ROLE " + pgx.Identifier{db.ServingRole}.Sanitize() + " IN DATABASE " +
			pgx.Identifier{dba.Config().Database}.Sanitize() + " SET " + setting
		if _, err := dba.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_ = dba.Close(t.Context())
	bouncer.Restart()

	s := startCluster(t, db, 2, 1, throughBouncer...)
	s.initialise(t)
	admin := [][]string{s.pilotEnv(t, 0, identity.Pilot(td)), s.pilotEnv(t, 1, identity.Pilot(td))}

	t.Run("commands", func(t *testing.T) {
		mustSpike(t, admin[0], "", "secret", "put", "apps/db", "user=admin", "pass=one")
		mustSpike(t, admin[1], "", "secret", "put", "apps/db", "user=admin", "pass=two")
		mustSpike(t, admin[0], "", "secret", "patch", "apps/db", "pass=three")
		if got := getJSON(t, admin[1], "apps/db"); got.Version != 3 || !cmp.Equal(got.Data, map[string]string{"user": "admin", "pass": "three"}) {
			t.Errorf("after put, put, patch: %+v", got)
		}
		if out := mustSpike(t, admin[1], "", "secret", "get", "apps/db", "--version", "1", "--field", "pass"); out != "one" {
			t.Errorf("version 1 pass = %q, want one", out)
		}
		var md struct {
			Current  int64 `json:"current_version"`
			Versions []struct {
				Version int64 `json:"version"`
			} `json:"versions"`
		}
		out := mustSpike(t, admin[0], "", "secret", "metadata", "get", "apps/db", "-o", "json")
		if err := json.Unmarshal([]byte(out), &md); err != nil || md.Current != 3 || len(md.Versions) != 3 {
			t.Errorf("metadata get printed %s (%v), want current version 3 of 3", out, err)
		}
		mustSpike(t, admin[1], "", "secret", "delete", "apps/db", "--versions", "3")
		if r := spike(t, admin[0], "", "secret", "get", "apps/db"); r.code != 2 || !strings.Contains(r.stderr, "deleted") {
			t.Errorf("get after delete: exit %d, stderr %q", r.code, r.stderr)
		}
		mustSpike(t, admin[0], "", "secret", "undelete", "apps/db", "--versions", "3")
		if out := mustSpike(t, admin[1], "", "secret", "list", "-r", "apps/"); strings.TrimSpace(out) != "apps/db" {
			t.Errorf("list apps/ printed %q", out)
		}

		// A policy put through one replica is enforced by the other
		// within a second, without LISTEN (the generation poll).
		web := s.pilotEnv(t, 1, spiffeid.RequireFromPath(td, "/app/web"))
		if r := spike(t, web, "", "secret", "get", "apps/db"); r.code != 2 {
			t.Fatalf("workload before its policy: exit %d", r.code)
		}
		mustSpike(t, admin[0], "", "policy", "put", "web", "--spiffe-id", "spiffe://spike.local/app/web", "--path", "apps/**", "--perm", "read,list")
		waitWithin(t, time.Second, "the other replica to honour the new policy", func() bool {
			return spike(t, web, "", "secret", "get", "apps/db", "--field", "pass").stdout == "three"
		})
		if out := mustSpike(t, admin[1], "", "policy", "list"); !strings.Contains(out, "web") {
			t.Errorf("policy list printed %q", out)
		}
	})

	t.Run("concurrent idempotent writers", func(t *testing.T) {
		const writers, puts = 8, 12
		clients := []nexusv1connect.SecretServiceClient{s.stormClient(t, 0), s.stormClient(t, 1)}
		type put struct {
			path, value string
			version     int64
		}
		var (
			mu   sync.Mutex
			done []put
			wg   sync.WaitGroup
		)
		for w := range writers {
			wg.Go(func() {
				for n := range puts {
					// Half the writers share one secret; the others have one each.
					path := "storm/shared"
					if w%2 == 1 {
						path = fmt.Sprintf("storm/w%d", w)
					}
					value := fmt.Sprintf("%d-%d", w, n)
					ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
					resp, err := clients[(w+n)%2].PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{
						Path: path, Data: map[string]string{"v": value},
					}))
					cancel()
					if err != nil {
						t.Errorf("put %s=%s: %v", path, value, err)
						continue
					}
					mu.Lock()
					done = append(done, put{path, value, resp.Msg.GetVersion()})
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		// The shared secret keeps 10 versions: read back what it keeps.
		latest := map[string]int64{}
		given := map[string]bool{}
		for _, p := range done {
			latest[p.path] = max(latest[p.path], p.version)
			key := fmt.Sprintf("%s@%d", p.path, p.version)
			if given[key] {
				t.Errorf("%s handed out twice", key)
			}
			given[key] = true
		}
		if want := int64(writers / 2 * puts); latest["storm/shared"] != want {
			t.Errorf("storm/shared is at version %d, want %d", latest["storm/shared"], want)
		}
		read := 0
		for i, p := range done {
			if p.version <= latest[p.path]-10 {
				continue // pruned
			}
			got, err := clients[i%2].GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: p.path, Version: p.version}))
			if err != nil {
				t.Errorf("read back %s version %d: %v", p.path, p.version, err)
				continue
			}
			if v := got.Msg.GetSecret().GetData()["v"]; v != p.value {
				t.Errorf("%s version %d = %q, want %q", p.path, p.version, v, p.value)
			}
			read++
		}
		t.Logf("%d puts through pgbouncer (2 server connections, 2 replicas), %d read back", len(done), read)
	})

	t.Run("audit verifies", func(t *testing.T) {
		var report struct {
			OK bool `json:"ok"`
		}
		out := mustSpike(t, admin[1], "", "audit", "verify", "-o", "json")
		if err := json.Unmarshal([]byte(out), &report); err != nil || !report.OK {
			t.Errorf("audit verify printed %s (%v)", out, err)
		}
	})
}
