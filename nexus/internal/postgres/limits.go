package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pooler names what stands between Nexus and PostgreSQL.
type Pooler string

const (
	// NoPooler means that every pooled connection of Nexus is a server session of
	// its own (PostgreSQL itself, or a pooler in session mode).
	NoPooler Pooler = ""
	// PgBouncerTransaction is pgbouncer in transaction mode, which gives a
	// server session to a client for one transaction only.
	PgBouncerTransaction Pooler = "pgbouncer-transaction"
)

// sessionLimit is a PostgreSQL setting that bounds how long a session may
// hold its connection, and the value Nexus wants.
type sessionLimit struct {
	name string
	max  time.Duration
}

// value is the limit as PostgreSQL reads it ("15s").
func (l sessionLimit) value() string {
	if l.max%time.Second == 0 {
		return fmt.Sprintf("%ds", l.max/time.Second)
	}
	return fmt.Sprintf("%dms", l.max.Milliseconds())
}

// sessionLimits are set on every session of Nexus: no statement, lock wait
// or idle transaction can hold a connection for long. Directly connected,
// they are startup parameters; behind a transaction-mode pooler, they are
// the serving role's defaults (SetServingLimits), and Open checks them.
var sessionLimits = []sessionLimit{
	{"statement_timeout", 15 * time.Second},
	{"lock_timeout", 10 * time.Second},
	{"idle_in_transaction_session_timeout", 30 * time.Second},
}

// limitStatements are the statements that make the limits role's
// defaults in database db.
func limitStatements(role, db string) []string {
	var out []string
	for _, l := range sessionLimits {
		out = append(out, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET %s = '%s'",
			pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize(), l.name, l.value()))
	}
	return out
}

// LimitsDeniedError says that the store's role may not set another role's
// defaults (that takes a superuser or CREATEROLE); SQL is what a role that
// may (or the serving role itself) must run instead.
type LimitsDeniedError struct {
	SQL string
	Err error
}

func (e *LimitsDeniedError) Error() string {
	return fmt.Sprintf("set the serving role's session limits: %v; run instead, as a superuser or the serving role: %s", e.Err, e.SQL)
}

func (e *LimitsDeniedError) Unwrap() error { return e.Err }

// SetServingLimits makes Nexus's session limits (statement, lock and idle
// transaction timeouts) defaults of role in the current database, so that
// they hold even where Nexus cannot send them at connection time (behind
// pgbouncer in transaction mode). Parameters Nexus sends at connection
// time override them. A store whose role may not alter role gets a
// *LimitsDeniedError.
func (s *Store) SetServingLimits(ctx context.Context, role string) error {
	var db string
	if err := s.pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return dbError(ctx, "set session limits", err)
	}
	stmts := limitStatements(role, db)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, sql := range stmts {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return &LimitsDeniedError{SQL: strings.Join(stmts, "; "), Err: err}
	}
	return dbError(ctx, "set session limits of "+role, err)
}

// checkLimits makes sure that the sessions this store gets have the
// session limits in force, at most as long as Nexus's own: behind a
// transaction-mode pooler they come from the role's defaults, which
// nothing else guarantees.
func (s *Store) checkLimits(ctx context.Context) error {
	names := make([]string, len(sessionLimits))
	for i, l := range sessionLimits {
		names[i] = l.name
	}
	var (
		role, db string
		got      []string
		ms       []int64
	)
	// One statement, so one server session answers all of it. Each of
	// the three settings is in milliseconds.
	err := s.pool.QueryRow(ctx,
		`SELECT current_user, current_database(),
		        coalesce(array_agg(name ORDER BY name), '{}'), coalesce(array_agg(setting::bigint ORDER BY name), '{}')
		 FROM pg_catalog.pg_settings WHERE name = ANY($1)`, names).Scan(&role, &db, &got, &ms)
	if err != nil {
		return dbError(ctx, "check session limits", err)
	}
	settings := map[string]int64{}
	for i, name := range got {
		settings[name] = ms[i]
	}
	var wrong []string
	for _, l := range sessionLimits {
		v, ok := settings[l.name]
		d := time.Duration(v) * time.Millisecond
		switch {
		case !ok:
			wrong = append(wrong, l.name+" is unknown to the database")
		case d <= 0:
			wrong = append(wrong, fmt.Sprintf("%s is off (want 1ms to %s)", l.name, l.value()))
		case d > l.max:
			wrong = append(wrong, fmt.Sprintf("%s is %s (want 1ms to %s)", l.name, d, l.value()))
		}
	}
	if len(wrong) == 0 {
		return nil
	}
	return fmt.Errorf("behind pgbouncer in transaction mode (SPIKE_DATABASE_POOLER=%s), Nexus cannot set its session limits "+
		"when it connects: they must be its role's defaults, but %s. "+
		"Run spike-nexus migrate as an owner that may alter role %q (a superuser or CREATEROLE), or run, as a superuser or as %q itself: %s; "+
		"then make pgbouncer open new server connections (RECONNECT on its admin console, or restart it)",
		s.pooler, strings.Join(wrong, ", "), role, role, strings.Join(limitStatements(role, db), "; "))
}
