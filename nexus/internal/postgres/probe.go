package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds of a readiness probe: waiting for a pooled connection, for a
// table lock, and for any one statement. Together they stay under the
// two seconds in which readiness must change.
const (
	probeAcquireTimeout = 700 * time.Millisecond
	probeLockTimeout    = "300ms"
	probeStmtTimeout    = "500ms"
)

// errProbeBusy: no pooled connection came free in time.
var errProbeBusy = errors.New("no database connection free within 700ms: the pool is exhausted or the database refuses new connections")

// Probe reports whether this Nexus could complete a write now. In one
// transaction that is always rolled back (nothing it does is ever seen), it
// takes a connection from the pool as requests do, takes the write locks
// of the tables every write uses, and inserts an audit record. It fails
// when the database is unreachable or refuses connections, the pool has
// none free, a lock is held against writes, a statement stalls, or the
// audit trail refuses inserts (a privilege revoked, out of disk).
func (s *Store) Probe(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, probeAcquireTimeout)
	conn, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return dbError(ctx, "database probe", errProbeBusy)
		}
		return dbError(ctx, "database probe: connect", err)
	}
	defer conn.Release()
	chain := make([]byte, 16)
	_, _ = rand.Read(chain)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+probeLockTimeout+"'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '"+probeStmtTimeout+"'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE secrets, secret_versions, idempotency_keys, audit_log IN ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		// A record of a chain of its own, rolled back below.
		_, err := tx.Exec(ctx, `INSERT INTO audit_log (chain_id, lane, seq, at, request_id, caller, peer, procedure,
		                          target, decision, reason, code, duration_us, mac)
		                        VALUES ($1, -1, 0, now(), 'readiness-probe', '', '', '', '', '', '', '', 0, NULL)`, chain)
		if err != nil {
			return err
		}
		return errRollback
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	return dbError(ctx, "database probe", err)
}

// errRollback ends the probe's transaction with a rollback.
var errRollback = errors.New("rolled back on purpose")
