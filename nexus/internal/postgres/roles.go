package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// schema is where the migrations create SPIKE's tables and functions.
const schema = "public"

// auditTables are the tables of the audit trail: Nexus's serving role may
// only read them, and insert into audit_log.
var auditTables = []string{"audit_log", "audit_checkpoints"}

// grantStatements give the serving role (%[1]s, quoted) what Nexus needs
// and nothing more. They name no table, so that tables and functions added
// by later migrations are covered: everything in the schema first, then the
// exceptions taken away again. Earlier grants are revoked first, so running
// them again after a migration changes nothing else.
var grantStatements = []string{
	`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %[1]s`,
	`REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %[1]s`,
	`REVOKE CREATE ON SCHEMA public FROM %[1]s`,
	`GRANT USAGE ON SCHEMA public TO %[1]s`,
	`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %[1]s`,
	// The audit trail is append-only for Nexus: it prunes through the
	// functions of migration 0007, and writes checkpoints only there.
	`REVOKE UPDATE, DELETE ON audit_log, audit_checkpoints FROM %[1]s`,
	`REVOKE INSERT ON audit_checkpoints FROM %[1]s`,
	// The schema version and the audit settings are the owner's to write.
	`REVOKE INSERT, UPDATE, DELETE ON schema_migrations, audit_settings FROM %[1]s`,
	// A rekey replaces the sealed keyring; its id and creation time stay,
	// and the row is never deleted (init inserts it, once).
	`REVOKE UPDATE, DELETE ON root_keyrings FROM %[1]s`,
	`REVOKE UPDATE ON secret_changes FROM %[1]s`,
	`REVOKE INSERT, DELETE ON watch_state FROM %[1]s`,
	`GRANT UPDATE (kdf_params, ciphertext, sealed, epoch) ON root_keyrings TO %[1]s`,
	`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %[1]s`,
	`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO %[1]s`,
}

// GrantServing gives role, the role Nexus serves as, the privileges it
// needs on the migrated schema: SELECT, INSERT, UPDATE and DELETE on its
// tables except the audit trail (SELECT and INSERT on audit_log, SELECT on
// audit_checkpoints), schema_migrations (SELECT) and root_keyrings (SELECT,
// INSERT, and UPDATE of the sealed keyring's columns only, for a rekey; no
// DELETE), USAGE on sequences and
// EXECUTE on SPIKE's functions (the audit pruning functions among them);
// no TRUNCATE, TRIGGER or CREATE. The store must be connected as the role
// that owns the schema (the one that ran Migrate), and role must exist and
// be another role. It runs under the migration lock, so it does not race a
// migration or another GrantServing.
func (s *Store) GrantServing(ctx context.Context, role string) error {
	if role == "" {
		return errors.New("grant privileges: no serving role named")
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var exists, self bool
		err := tx.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1), $1 = current_user`,
			role).Scan(&exists, &self)
		if err != nil {
			return fmt.Errorf("look up role: %w", err)
		}
		if !exists {
			return fmt.Errorf("role %q does not exist: create it first (CREATE ROLE ... LOGIN PASSWORD ...)", role)
		}
		if self {
			return fmt.Errorf("role %q is the role running the migrations: Nexus must serve as another role", role)
		}
		quoted := pgx.Identifier{role}.Sanitize()
		for _, stmt := range grantStatements {
			sql := fmt.Sprintf(stmt, quoted)
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		return nil
	})
	if err != nil {
		return dbError(ctx, "grant privileges to "+role, err)
	}
	return nil
}

// CurrentRole returns the role the store's connections act as.
func (s *Store) CurrentRole(ctx context.Context) (string, error) {
	var role string
	err := s.pool.QueryRow(ctx, "SELECT current_user").Scan(&role)
	return role, dbError(ctx, "read current role", err)
}

// SchemaVersions returns the schema version of the database and the newest
// one this Nexus embeds.
func (s *Store) SchemaVersions(ctx context.Context) (current, latest int64, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	current, err = s.SchemaVersion(ctx)
	return current, ms[len(ms)-1].version, err
}

// AuditRisks lists, one phrase each, the ways in which role could alter or
// erase the audit trail (or grant itself a way to): superuser, BYPASSRLS or
// CREATEROLE, or membership in a role that is one of those or may write
// server files or run server programs; owning the database, the schema or
// any of SPIKE's tables,
// sequences or functions (owners can drop, truncate and disable triggers);
// UPDATE or DELETE on the audit tables; TRUNCATE or TRIGGER on any table;
// CREATE in the schema; the right to set session_replication_role, which
// turns triggers off. None means role is fit to serve.
func (s *Store) AuditRisks(ctx context.Context, role string) ([]string, error) {
	var risks []string
	var super, bypassRLS, createRole, ownsDB, ownsSchema, create bool
	var memberOf *string
	var version int
	err := s.pool.QueryRow(ctx,
		`SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole,
		        (SELECT string_agg(m.rolname, ', ' ORDER BY m.rolname) FROM pg_catalog.pg_roles m
		         WHERE NOT r.rolsuper AND m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER')
		           AND (m.rolsuper OR m.rolbypassrls OR m.rolcreaterole
		                OR m.rolname IN ('pg_execute_server_program', 'pg_write_server_files'))),
		        pg_has_role($1, d.datdba, 'MEMBER'),
		        pg_has_role($1, n.nspowner, 'MEMBER'),
		        has_schema_privilege($1, n.oid, 'CREATE'),
		        current_setting('server_version_num')::int
		 FROM pg_catalog.pg_roles r, pg_catalog.pg_database d, pg_catalog.pg_namespace n
		 WHERE r.rolname = $1 AND d.datname = current_database() AND n.nspname = $2`,
		role, schema).Scan(&super, &bypassRLS, &createRole, &memberOf, &ownsDB, &ownsSchema, &create, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("check privileges: role %q or schema %s does not exist", role, schema)
	}
	if err != nil {
		return nil, dbError(ctx, "check privileges", err)
	}
	for _, r := range []struct {
		bad  bool
		what string
	}{
		{super, "is a superuser"},
		{bypassRLS, "has BYPASSRLS"},
		{createRole, "has CREATEROLE (it can grant itself the owner's role)"},
		{memberOf != nil, "is a member of " + deref(memberOf) + " (superuser, BYPASSRLS, CREATEROLE or server file and program access)"},
		{ownsDB, "owns the database"},
		{ownsSchema, "owns schema " + schema},
		{create, "may CREATE in schema " + schema},
	} {
		if r.bad {
			risks = append(risks, r.what)
		}
	}

	rows, err := s.pool.Query(ctx,
		`SELECT what FROM (
		 SELECT 1 AS ord, 'owns ' || CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view ' ELSE 'table ' END || c.relname
		 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $2 AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND pg_has_role($1, c.relowner, 'MEMBER')
		 UNION ALL
		 SELECT 2, 'owns function ' || p.proname
		 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = $2 AND pg_has_role($1, p.proowner, 'MEMBER')
		 UNION ALL
		 SELECT 3, 'has ' || p.priv || ' on ' || c.relname
		 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
		      unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER']) AS p(priv)
		 WHERE n.nspname = $2 AND c.relkind IN ('r', 'p')
		   AND (p.priv IN ('TRUNCATE', 'TRIGGER') OR c.relname = ANY($3))
		   AND has_table_privilege($1, c.oid, p.priv)
		 ) AS f(ord, what) ORDER BY ord, position('audit' in what) = 0, what`,
		role, schema, auditTables)
	if err != nil {
		return nil, dbError(ctx, "check privileges", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbError(ctx, "check privileges", err)
	}
	risks = append(risks, summarise(found)...)

	// has_parameter_privilege exists from PostgreSQL 15; before, only
	// superusers could set session_replication_role.
	if version >= 150000 && !super {
		var set bool
		err := s.pool.QueryRow(ctx, `SELECT has_parameter_privilege($1, 'session_replication_role', 'SET')`, role).Scan(&set)
		if err != nil {
			return nil, dbError(ctx, "check privileges", err)
		}
		if set {
			risks = append(risks, "may SET session_replication_role (turns triggers off)")
		}
	}
	return risks, nil
}

// summarise shortens a long list of ownerships to its first few, so that
// the message of a role owning every table stays readable.
func summarise(found []string) []string {
	const most = 6
	if len(found) <= most {
		return found
	}
	return append(found[:most:most], fmt.Sprintf("%d more like these", len(found)-most))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
