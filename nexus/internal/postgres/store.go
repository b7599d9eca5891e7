// Package postgres is Nexus's one store: PostgreSQL through a pgx connection
// pool. It stores only what Nexus has already sealed and returns domain
// errors (package fault) for the conditions callers act on.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Pool limits and timeouts. MaxConns comes from the caller (configuration).
const (
	maxConnLifetime   = time.Hour
	maxConnIdleTime   = 5 * time.Minute
	healthCheckPeriod = 30 * time.Second
	// connectTimeout applies unless the DSN sets connect_timeout.
	connectTimeout = 5 * time.Second
)

// commitTimeout bounds a commit, which runs even if the request's context
// is done.
const commitTimeout = 10 * time.Second

// Store is Nexus's PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	pooler Pooler
	// defaultMaxVersions applies to secrets whose max_versions is 0.
	defaultMaxVersions int32
}

// DefaultMaxVersions is the retention of secrets that set none, unless
// Options says otherwise.
const DefaultMaxVersions = 10

// Options tune a Store.
type Options struct {
	// MaxConns bounds the connection pool (at least 1).
	MaxConns int32
	// DefaultMaxVersions is how many versions a secret keeps when it sets
	// no max_versions of its own (1 to MaxMaxVersions; 0 means
	// DefaultMaxVersions).
	DefaultMaxVersions int32
	// Pooler is what stands between Nexus and PostgreSQL (NoPooler:
	// nothing that shares server sessions between clients).
	Pooler Pooler
}

// Open connects to the database at dsn (a libpq key/value string or URL; its
// sslmode is honoured) with a pool of at most opts.MaxConns connections, and
// checks that the database answers. An unreachable database is a
// fault.Unavailable error. Behind a pooler in transaction mode
// (opts.Pooler), it uses no named prepared statements unless dsn sets
// default_query_exec_mode, sends no session settings, and refuses a
// database whose sessions do not get the limits as defaults (see
// SetServingLimits).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	maxConns := opts.MaxConns
	if maxConns < 1 {
		return nil, fmt.Errorf("open database: max connections must be at least 1, got %d", maxConns)
	}
	if opts.DefaultMaxVersions == 0 {
		opts.DefaultMaxVersions = DefaultMaxVersions
	}
	if opts.DefaultMaxVersions < 1 || opts.DefaultMaxVersions > secret.MaxMaxVersions {
		return nil, fmt.Errorf("open database: default max versions must be 1 to %d, got %d", secret.MaxMaxVersions, opts.DefaultMaxVersions)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	cfg.MaxConns = maxConns
	cfg.MinConns = 0
	cfg.MaxConnLifetime = maxConnLifetime
	cfg.MaxConnIdleTime = maxConnIdleTime
	cfg.HealthCheckPeriod = healthCheckPeriod
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	switch opts.Pooler {
	case NoPooler:
		// Server-side limits, unless the DSN sets its own: no statement,
		// lock wait or idle transaction can hold a connection for long.
		for _, l := range sessionLimits {
			if _, set := cfg.ConnConfig.RuntimeParams[l.name]; !set {
				cfg.ConnConfig.RuntimeParams[l.name] = l.value()
			}
		}
	case PgBouncerTransaction:
		// Named prepared statements live in one server session, which a
		// transaction-mode pooler gives another client after each
		// transaction. Cached descriptions and the unnamed statement keep
		// one round trip per query (and batches in one pipeline) and work
		// on any server session. A DSN that names a mode (pgbouncer 1.21+
		// with max_prepared_statements can keep cache_statement) wins.
		if !strings.Contains(dsn, "default_query_exec_mode") {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		}
		// No limits as startup parameters: pgbouncer refuses them, or,
		// listed in ignore_startup_parameters, drops them silently. They
		// are the serving role's defaults instead, checked below.
	default:
		return nil, fmt.Errorf("open database: unknown pooler %q", opts.Pooler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	s := &Store{pool: pool, pooler: opts.Pooler, defaultMaxVersions: opts.DefaultMaxVersions}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if opts.Pooler != NoPooler {
		if err := s.checkLimits(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// DefaultMaxVersions is the retention of secrets that set none.
func (s *Store) DefaultMaxVersions() int32 { return s.defaultMaxVersions }

// Close closes all connections. It waits for connections in use to be
// returned to the pool.
func (s *Store) Close() {
	s.pool.Close()
}

// Stat returns a snapshot of the connection pool's statistics, for metrics.
func (s *Store) Stat() *pgxpool.Stat {
	return s.pool.Stat()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return dbError(ctx, "ping database", s.pool.Ping(ctx))
}

// dbError turns an error from pgx into what callers of Store see: nil stays
// nil, domain errors pass through, context errors keep their identity
// (errors.Is), connection failures become fault.Unavailable, and anything
// else is wrapped with op.
func dbError(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(err, ctxErr) {
			return fmt.Errorf("%s: %w", op, err)
		}
		return fmt.Errorf("%s: %w: %w", op, ctxErr, err)
	}
	if isConnectionError(err) {
		return fault.Wrap(fault.Unavailable, fmt.Errorf("%s: %w", op, err), "database unavailable")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55P03", "57014", "40P01", "40001": // lock timeout, statement timeout, deadlock, serialization
			return fault.Wrap(fault.Aborted, fmt.Errorf("%s: %w", op, err),
				"the database was too busy to finish the request (%s): nothing was changed, try again", pgErr.Code)
		}
		if cause, ok := unableStates[pgErr.Code]; ok {
			return fault.Wrap(fault.Unavailable, fmt.Errorf("%s: %w", op, err),
				"database unavailable (%s): nothing was changed, try again later", cause)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unableStates are the SQLSTATEs of a database that answers but cannot
// take the request now, whatever the request: the statement failed and
// its transaction with it, so nothing was changed.
var unableStates = map[string]string{
	"53100": "out of disk space",
	"53200": "out of memory",
	"25006": "read-only: a standby, or a primary in recovery",
}

// unableCause says why the database cannot be used, when err says that it
// cannot ("" otherwise).
func unableCause(err error) string {
	if isConnectionError(err) {
		return "unreachable"
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unableStates[pgErr.Code]
	}
	return ""
}

// isConnectionError reports whether err means the database could not be
// reached or the connection broke, as opposed to the database refusing a
// statement.
func isConnectionError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03": // cannot_connect_now
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		pgconn.Timeout(err)
}

// errNoRecord refuses a mutation that came without its audit record.
var errNoRecord = errors.New("a mutation without its audit record was refused")

// mutate is inTx for a request's mutation: rec, the request's audit record,
// is written in the same transaction just before the commit, so that no
// mutation commits without its record. Without a record nothing happens.
// A mutation whose idempotency key was applied before returns nil without
// running fn again (see mutateOutcome).
func (s *Store) mutate(ctx context.Context, rec *audit.Entry, fn func(pgx.Tx) error) error {
	_, _, err := mutateOutcome(ctx, s, rec, func(tx pgx.Tx) (struct{}, error) { return struct{}{}, fn(tx) })
	return err
}

// mutateOutcome is mutate for a mutation that returns something. When rec
// carries an idempotency key, the outcome is kept under it (JSON, MACed) in
// the same transaction; when the key already has an outcome, fn does not
// run, nothing is written, and the first outcome is returned with replayed
// set. Two requests racing with one key are serialised by the key's row:
// the second sees the first's outcome.
func mutateOutcome[T any](ctx context.Context, s *Store, rec *audit.Entry, fn func(pgx.Tx) (T, error)) (out T, replayed bool, err error) {
	if rec == nil {
		return out, false, errNoRecord
	}
	for attempt := 1; ; attempt++ {
		out, replayed, err = runTx(ctx, s, rec, fn)
		if attempt < maxWriteAttempts && isUniqueViolation(err, "idempotency_keys_pkey") {
			continue
		}
		return out, replayed, err
	}
}

func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

func runTx[T any](ctx context.Context, s *Store, rec *audit.Entry, fn func(pgx.Tx) (T, error)) (out T, replayed bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return out, false, err
	}
	rollback := func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	var (
		r     audit.Replay
		keyed bool
	)
	if rec != nil {
		r, keyed = rec.Replay()
	}
	if keyed {
		var o storedOutcome
		err := tx.QueryRow(ctx, `SELECT request_hash, outcome, mac FROM idempotency_keys WHERE caller = $1 AND key = $2`,
			r.Caller, r.Key).Scan(&o.hash, &o.outcome, &o.mac)
		switch {
		case err == nil:
			rollback()
			if err := rec.CheckOutcome(o.hash, o.outcome, o.mac); err != nil {
				return out, false, err
			}
			if err := json.Unmarshal(o.outcome, &out); err != nil {
				return out, false, fault.Wrap(fault.DataLoss, err, "the stored outcome of Idempotency-Key %q does not decode", r.Key)
			}
			return out, true, nil
		case !errors.Is(err, pgx.ErrNoRows):
			rollback()
			return out, false, err
		}
	}
	if out, err = fn(tx); err != nil {
		rollback()
		return out, false, err
	}
	if keyed {
		if err := keepOutcome(ctx, tx, rec, r, out); err != nil {
			rollback()
			return out, false, err
		}
	}
	if rec != nil {
		if err := writeRecord(ctx, tx, rec); err != nil {
			rollback()
			rec.Aborted()
			return out, false, err
		}
	}
	// The commit must not be cut short by the caller going away: its outcome
	// would be unknown, and the request's audit record with it.
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err = tx.Commit(commitCtx)
	var pgErr *pgconn.PgError
	refused := errors.Is(err, pgx.ErrTxCommitRollback) || errors.As(err, &pgErr) && commitRefused(pgErr)
	if rec != nil {
		if refused {
			rec.Aborted()
		} else {
			rec.Done(err == nil)
		}
	}
	if err != nil {
		if !refused {
			return out, false, fault.Wrap(fault.Unknown, err, "the database connection broke while committing: the change may or may not have been applied")
		}
		return out, false, err
	}
	return out, false, nil
}

// keepOutcome stores a mutation's outcome under its idempotency key.
func keepOutcome(ctx context.Context, tx pgx.Tx, rec *audit.Entry, r audit.Replay, out any) error {
	outcome, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode outcome: %w", err)
	}
	mac, err := rec.OutcomeMAC(outcome)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO idempotency_keys (caller, key, request_hash, outcome, mac) VALUES ($1, $2, $3, $4, $5)`,
		r.Caller, r.Key, r.RequestHash, outcome, mac)
	return err
}

// PruneOutcomes deletes the outcomes kept under idempotency keys for longer
// than retention, and returns how many.
func (s *Store) PruneOutcomes(ctx context.Context, retention time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval`, retention)
	if err != nil {
		return 0, dbError(ctx, "prune idempotency keys", err)
	}
	return tag.RowsAffected(), nil
}

// writeRecord inserts the rows of rec in tx (none when an earlier mutation
// of the request carried them).
func writeRecord(ctx context.Context, tx pgx.Tx, rec *audit.Entry) error {
	rows, err := rec.Rows(ctx)
	if err != nil || len(rows) == 0 {
		return err
	}
	return insertAudit(ctx, tx, rows)
}
