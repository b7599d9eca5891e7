package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// servingStores migrates a fresh database as its owner, grants the serving
// role its privileges, and returns the stores of both roles and the roles.
func servingStores(t *testing.T) (owner, serving *Store, db pgtest.Roles) {
	t.Helper()
	db = pgtest.NewRoles(t, "")
	ctx := t.Context()
	owner, err := Open(ctx, db.Owner, Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	if _, err := owner.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := owner.GrantServing(ctx, db.ServingRole); err != nil {
		t.Fatal(err)
	}
	serving, err = Open(ctx, db.Serving, Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(serving.Close)
	return owner, serving, db
}

// wantSQLState fails the test unless err is a PostgreSQL error with code.
func wantSQLState(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("%s: error = %v, want SQLSTATE %s", what, err, code)
		return
	}
	if pgErr.Code != code {
		t.Errorf("%s: SQLSTATE %s (%s), want %s", what, pgErr.Code, pgErr.Message, code)
	}
}

// The serving role cannot rewrite or erase the audit trail, run DDL or turn
// triggers off: PostgreSQL refuses each with insufficient_privilege.
func TestServingRoleCannotAlterAuditTrail(t *testing.T) {
	t.Parallel()
	_, serving, db := servingStores(t)
	ctx := t.Context()
	// One audit record and one checkpoint to aim at, written as the
	// serving role through the prune function.
	trail := audittest.Trail(t, serving)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go trail.Run(runCtx)
	e := trail.Begin(ctx, "r1", audittest.Caller, "127.0.0.1:1", "/test/Read")
	e.Allow("test")
	if err := trail.Finish(ctx, e, "ok"); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, db.Serving)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the serving role reads %d audit records (%v), want 1", n, err)
	}

	const denied = "42501" // insufficient_privilege
	for _, sql := range []string{
		`UPDATE audit_log SET caller = 'someone else'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
		`UPDATE audit_checkpoints SET seq = 0`,
		`DELETE FROM audit_checkpoints`,
		`TRUNCATE audit_checkpoints`,
		`INSERT INTO audit_checkpoints (chain_id, lane, seq, last_mac, mac) VALUES ('\x01', 0, 1, '\x02', '\x03')`,
		`TRUNCATE secrets`,
		`TRUNCATE secret_versions, policies`,
		`INSERT INTO schema_migrations (version) VALUES (999)`,
		`UPDATE root_keyrings SET keyring_id = '\x01'`,
		`UPDATE root_keyrings SET created_at = now()`,
		`DELETE FROM root_keyrings`,
		`DELETE FROM schema_migrations`,
		`DROP TABLE audit_log`,
		`DROP TABLE secrets`,
		`ALTER TABLE audit_log ADD COLUMN note text`,
		`ALTER TABLE audit_log DISABLE TRIGGER ALL`,
		`ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL`,
		`ALTER TABLE audit_log OWNER TO CURRENT_USER`,
		`CREATE TABLE evil (x int)`,
		`CREATE INDEX evil ON audit_log (caller)`,
		`CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`CREATE OR REPLACE FUNCTION audit_prune_unauthenticated(p_before timestamptz) RETURNS bigint
		   LANGUAGE sql AS 'SELECT 0::bigint'`,
		`ALTER FUNCTION audit_prune_chain(bytea, smallint, bigint, bytea, bytea) SECURITY INVOKER`,
		`SET session_replication_role = replica`,
	} {
		_, err := conn.Exec(ctx, sql)
		wantSQLState(t, sql, err, denied)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the refused statements: %d audit records (%v), want 1", n, err)
	}

	// What the functions will do for it is bounded: a checkpoint must
	// name a real record with its MAC, and only unauthenticated records
	// go by age.
	_, err = conn.Exec(ctx, `SELECT audit_prune_chain('\x01', 0::smallint, 1, '\x02', '\x03')`)
	wantSQLState(t, "a checkpoint naming no record", err, "22023")
	_, err = conn.Exec(ctx, `SELECT audit_prune_chain('\x01', -1::smallint, 1, '\x02', '\x03')`)
	wantSQLState(t, "a checkpoint in an unauthenticated lane", err, "22023")
	_, err = conn.Exec(ctx, `SELECT audit_prune_unauthenticated(now())`)
	wantSQLState(t, "pruning records younger than the minimum age", err, "22023")
	_, err = conn.Exec(ctx, `UPDATE audit_settings SET min_prune_age = interval '0'`)
	wantSQLState(t, "changing the minimum prune age", err, denied)
	var deleted int64
	if err := conn.QueryRow(ctx, `SELECT audit_prune_unauthenticated(now() - interval '2 hours')`).Scan(&deleted); err != nil || deleted != 0 {
		t.Fatalf("audit_prune_unauthenticated deleted %d authenticated records (%v), want 0", deleted, err)
	}
}

// Nexus's own work goes through as the serving role: records are written,
// the trail is pruned through the SECURITY DEFINER functions, and what is
// left still verifies.
func TestServingRolePrunesAndVerifies(t *testing.T) {
	t.Parallel()
	owner, serving, _ := servingStores(t)
	ctx := t.Context()
	trail := audittest.Trail(t, serving)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go trail.Run(runCtx)
	write := func(n int) {
		t.Helper()
		for i := range n {
			e := trail.Begin(ctx, fmt.Sprintf("r%d", i), audittest.Caller, "127.0.0.1:1", "/test/Read")
			e.Allow("test")
			if err := trail.Finish(ctx, e, "ok"); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(6)
	var cut time.Time
	if err := serving.pool.QueryRow(ctx, `SELECT max(at) + interval '1 microsecond' FROM audit_log`).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	write(4)
	// Records are stamped by Nexus's clock: the later ones must be after
	// the cut for the test to mean anything.
	var after int
	if err := serving.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE at >= $1`, cut).Scan(&after); err != nil || after != 4 {
		t.Fatalf("%d records at or after the cut (%v), want 4", after, err)
	}

	rec := trail.Begin(ctx, "prune", audittest.Caller, "127.0.0.1:1", "/test/Prune")
	rec.Allow("test")
	_, _, err := trail.Prune(ctx, rec, cut)
	if fault.CodeOf(err) != fault.Invalid {
		t.Fatalf("prune of records younger than an hour: %v, want refused", err)
	}
	if _, err := owner.pool.Exec(ctx, `UPDATE audit_settings SET min_prune_age = interval '0'`); err != nil {
		t.Fatal(err)
	}
	rec = trail.Begin(ctx, "prune", audittest.Caller, "127.0.0.1:1", "/test/Prune")
	rec.Allow("test")
	deleted, checkpoints, err := trail.Prune(ctx, rec, cut)
	if err != nil {
		t.Fatalf("prune as the serving role: %v", err)
	}
	if deleted != 6 || checkpoints == 0 {
		t.Fatalf("prune deleted %d records in %d checkpoints, want 6 in at least 1", deleted, checkpoints)
	}
	rep, err := trail.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("the pruned trail does not verify: %+v", rep)
	}
	cps, err := serving.AuditCheckpoints(ctx)
	if err != nil || len(cps) != int(checkpoints) {
		t.Fatalf("checkpoints = %d (%v), want %d", len(cps), err, checkpoints)
	}
}

// GrantServing refuses a role that does not exist and the owner itself,
// and AuditRisks finds nothing wrong with the role it granted to but
// everything wrong with the owner.
func TestGrantServingAndAuditRisks(t *testing.T) {
	t.Parallel()
	owner, serving, db := servingStores(t)
	ctx := t.Context()
	if err := owner.GrantServing(ctx, "no_such_role_here"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("grant to a missing role: %v, want does not exist", err)
	}
	if err := owner.GrantServing(ctx, db.OwnerRole); err == nil || !strings.Contains(err.Error(), "another role") {
		t.Errorf("grant to the owner itself: %v, want a refusal", err)
	}
	// Granting again (as after the next migration) changes nothing.
	if err := owner.GrantServing(ctx, db.ServingRole); err != nil {
		t.Fatal(err)
	}
	risks, err := serving.AuditRisks(ctx, db.ServingRole)
	if err != nil || len(risks) != 0 {
		t.Errorf("AuditRisks(serving role) = %q, %v; want none", risks, err)
	}
	risks, err = owner.AuditRisks(ctx, db.OwnerRole)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"owns the database", "owns schema public", "may CREATE in schema public", "owns table audit_log"} {
		if !strings.Contains(strings.Join(risks, "; "), want) {
			t.Errorf("AuditRisks(owner) = %q, want it to say %q", risks, want)
		}
	}
}

// Nexus removes a secret as its serving role, and migration 0013's
// trigger, which runs with that role's rights, removes the versions too.
func TestServingRoleDeleteTakesVersions(t *testing.T) {
	t.Parallel()
	_, _, db := servingStores(t)
	ctx := t.Context()
	conn := func(dsn string) *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.WithoutCancel(ctx)) })
		return c
	}
	owner, serving := conn(db.Owner), conn(db.Serving)
	for _, sql := range []string{
		`INSERT INTO secrets (path, current_version, oldest_version) VALUES ('gone', 2, 1)`,
		`INSERT INTO secret_versions (path, version, dek_id, sealed, created_by) VALUES ('gone', 1, '\x01', '\x02', 'w'), ('gone', 2, '\x01', '\x02', 'w')`,
	} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := serving.Exec(ctx, `DELETE FROM secrets WHERE path = 'gone'`); err != nil {
		t.Fatalf("DELETE as the serving role: %v", err)
	}
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM secret_versions WHERE path = 'gone'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d version rows of the deleted secret remain, want none", n)
	}
}
