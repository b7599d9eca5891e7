package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// migrationFiles holds the schema, one file per version: NNNN_name.sql,
// numbered from 1 without gaps. A file, once released, never changes.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the pg_advisory_lock key that serialises migrations
// between Nexus replicas starting at the same time ("SPIKE" + 1).
const migrateLockKey int64 = 0x5350494b45_0001

// migration is one schema version.
type migration struct {
	version int64
	name    string
	sql     string
	// servesFrom is the oldest schema version whose Nexus may serve this
	// one: the migration's own version unless its file says, in a line
	// "-- serves-from: N", that it only adds what a Nexus built for N
	// ignores (a rolling upgrade: old replicas keep serving the migrated
	// database while new ones roll out).
	servesFrom int64
}

// servesFromMarker starts the line of a migration that declares itself
// compatible with an older Nexus.
const servesFromMarker = "-- serves-from:"

// parseServesFrom reads a migration's serves-from line, if any.
func parseServesFrom(m *migration) error {
	m.servesFrom = m.version
	for line := range strings.Lines(m.sql) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), servesFromMarker)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil || n < 1 || n > m.version {
			return fmt.Errorf("migration %s: %s wants a schema version from 1 to %d", m.name, servesFromMarker, m.version)
		}
		m.servesFrom = n
	}
	return nil
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", base)
		}
		sql, err := fs.ReadFile(migrationFiles, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		m := migration{version: version, name: base, sql: string(sql)}
		if err := parseServesFrom(&m); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != int64(i+1) {
			return nil, fmt.Errorf("migration %s: want version %d (versions start at 1, no gaps or duplicates)",
				m.name, i+1)
		}
	}
	return ms, nil
}

// Migrate brings the schema up to the newest embedded version and returns
// it. It holds a session advisory lock while it works, so replicas starting
// together apply each migration once; each migration runs in its own
// transaction with its schema_migrations row. Running it again is a no-op.
// A database already newer than this Nexus is a fault.FailedPrecondition.
func (s *Store) Migrate(ctx context.Context) (int64, error) {
	ms, err := migrations()
	if err != nil {
		return 0, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, dbError(ctx, "migrate: acquire connection", err)
	}
	defer conn.Release()
	// Migrations may wait for another replica's and may run long: lift the
	// pool's statement and lock timeouts on this session while they run.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0; SET lock_timeout = 0"); err != nil {
		return 0, dbError(ctx, "migrate: session settings", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "RESET statement_timeout; RESET lock_timeout")
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return 0, dbError(ctx, "migrate: lock", err)
	}
	defer func() {
		// If unlocking fails, close the session: that releases the lock too.
		_, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockKey)
		if err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint      PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return 0, dbError(ctx, "migrate: create schema_migrations", err)
	}
	// Which Nexus may serve each version (NULL before this column: only
	// its own).
	if _, err := conn.Exec(ctx, `ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS serves_from bigint`); err != nil {
		return 0, dbError(ctx, "migrate: add schema_migrations.serves_from", err)
	}
	var current int64
	err = conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current)
	if err != nil {
		return 0, dbError(ctx, "migrate: read schema version", err)
	}
	latest := ms[len(ms)-1].version
	if current > latest {
		return current, fault.New(fault.FailedPrecondition,
			"database schema version %d is newer than this Nexus supports (%d): upgrade Nexus", current, latest)
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at, serves_from) VALUES ($1, now(), $2)", m.version, m.servesFrom)
			return err
		})
		if err != nil {
			return current, dbError(ctx, "migrate: apply "+m.name, err)
		}
		current = m.version
	}
	return current, nil
}

// SchemaVersion returns the newest applied migration, 0 for a database that
// was never migrated.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	var version int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	return version, dbError(ctx, "read the database schema version", err)
}

// CheckSchema returns nil when this Nexus may serve the database's
// schema: the newest it embeds, or a newer one whose every newer migration
// declares that a Nexus of this schema may serve it (a rolling upgrade).
// Otherwise the error says how it differs: a database behind (not
// migrated yet) or ahead (migrated by a newer Nexus that this one cannot
// serve).
func (s *Store) CheckSchema(ctx context.Context) error {
	current, latest, err := s.SchemaVersions(ctx)
	if err != nil {
		return err
	}
	switch {
	case current < latest:
		return fmt.Errorf("database schema version is %d, this Nexus expects %d", current, latest)
	case current > latest:
		ok, err := s.Serves(ctx, latest)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("database schema version is %d, newer than this Nexus (%d) can serve", current, latest)
		}
	}
	return nil
}

// Serves reports whether a Nexus built for schema version latest may
// serve the database: every migration applied after latest says so (its
// serves_from is at most latest). The column is plain, as the schema
// version itself is: a database writer can make Nexus serve a schema it
// does not understand, as they can alter the schema.
func (s *Store) Serves(ctx context.Context, latest int64) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx,
		`SELECT coalesce(bool_and(coalesce(serves_from, version) <= $1), true) FROM schema_migrations WHERE version > $1`,
		latest).Scan(&ok)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // undefined_column: written before serves_from
		return false, nil
	}
	return ok, dbError(ctx, "read which Nexus may serve the schema", err)
}
