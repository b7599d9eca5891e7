package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// migrateHint says how to bring a database's schema up to date, for the
// errors of a Nexus that finds it behind.
const migrateHint = "run, as the role that owns the schema: " +
	"SPIKE_DATABASE_OWNER_URL=<owner's URL> SPIKE_DATABASE_ROLE=<Nexus's role> spike-nexus migrate"

// Migrate is spike-nexus migrate: it connects as the owner of SPIKE's
// schema, brings the schema up to the newest version this binary embeds,
// grants cfg.Role what Nexus needs to serve (and no more), makes Nexus's
// session limits cfg.Role's defaults when the owner may (what a Nexus
// behind pgbouncer in transaction mode relies on; otherwise it logs the
// statements to run), and
// returns the schema version. The serving Nexus never needs the owner's
// credential. It needs a session of its own (an advisory lock, session
// settings): connect it to PostgreSQL, not through a transaction-mode
// pooler.
func Migrate(ctx context.Context, cfg MigrateConfig, log *slog.Logger) (int64, error) {
	store, err := postgres.Open(ctx, cfg.OwnerURL, postgres.Options{MaxConns: 2})
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer store.Close()
	version, err := store.Migrate(ctx)
	if err != nil {
		return version, fmt.Errorf("migrate: %w", err)
	}
	if err := store.GrantServing(ctx, cfg.Role); err != nil {
		return version, fmt.Errorf("migrate: %w", err)
	}
	var denied *postgres.LimitsDeniedError
	switch err := store.SetServingLimits(ctx, cfg.Role); {
	case errors.As(err, &denied):
		// Only a Nexus behind pgbouncer needs them, and it refuses to
		// start without them, saying so: no warning for everyone else.
		log.Info("could not make the session limits the serving role's defaults (that takes a superuser or CREATEROLE); "+
			"needed only behind pgbouncer in transaction mode (SPIKE_DATABASE_POOLER=pgbouncer-transaction), where Nexus refuses to start without them: "+
			"run the statements as a superuser or as the serving role",
			"role", cfg.Role, "sql", denied.SQL, "error", denied.Err.Error())
	case err != nil:
		return version, fmt.Errorf("migrate: %w", err)
	}
	risks, err := store.AuditRisks(ctx, cfg.Role)
	if err != nil {
		return version, fmt.Errorf("migrate: %w", err)
	}
	if len(risks) > 0 {
		log.Warn("the serving role can still alter the audit trail, whatever it was granted; Nexus will refuse to serve as it",
			"role", cfg.Role, "because", strings.Join(risks, "; "))
	}
	log.Info("database migrated", "schema_version", version, "serving_role", cfg.Role)
	return version, nil
}

// checkDatabase makes sure that Nexus may serve on store: its schema is
// the one this Nexus embeds (Nexus does not migrate: spike-nexus migrate
// does, as the owner), and its role cannot alter the audit trail, unless
// allowPrivileged says to warn instead. It returns the schema version.
func checkDatabase(ctx context.Context, store *postgres.Store, allowPrivileged bool, log *slog.Logger) (int64, error) {
	current, latest, err := store.SchemaVersions(ctx)
	if err != nil {
		return 0, err
	}
	switch {
	case current < latest:
		return current, fmt.Errorf("database schema version %d is behind this Nexus (%d): %s", current, latest, migrateHint)
	case current > latest:
		ok, err := store.Serves(ctx, latest)
		if err != nil {
			return current, err
		}
		if !ok {
			return current, fmt.Errorf("database schema version %d is newer than this Nexus supports (%d): upgrade Nexus", current, latest)
		}
		log.Warn("serving a newer database schema, which declares that this Nexus may (a rolling upgrade): upgrade Nexus",
			"schema_version", current, "nexus_schema_version", latest)
	}
	role, err := store.CurrentRole(ctx)
	if err != nil {
		return current, err
	}
	risks, err := store.AuditRisks(ctx, role)
	if err != nil {
		return current, err
	}
	if len(risks) == 0 {
		return current, nil
	}
	if allowPrivileged {
		log.Warn("UNSAFE: Nexus's database role can alter or erase the audit trail; serving anyway because SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE=true (development only)",
			"role", role, "because", strings.Join(risks, "; "))
		return current, nil
	}
	return current, fmt.Errorf("database role %q can alter the audit trail: it %s; "+
		"connect Nexus (SPIKE_DATABASE_URL) as a role of its own that spike-nexus migrate granted its privileges to (SPIKE_DATABASE_ROLE), "+
		"or, for development only, set SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE=true (unsafe)", role, strings.Join(risks, ", "))
}
