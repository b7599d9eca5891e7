package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
)

// errAudit marks a failed audit write, so that the request fails closed
// with Unavailable whatever the database said (even "permission denied"),
// naming the database when it is the cause.
func errAudit(err error) error {
	if cause := unableCause(err); cause != "" {
		return fault.Wrap(fault.Unavailable, err, "database unavailable (%s): the audit record could not be written", cause)
	}
	return fault.Wrap(fault.Unavailable, err, "audit log unavailable: the audit record could not be written")
}

// InsertAudit inserts records that belong to no mutation, in one statement.
func (s *Store) InsertAudit(ctx context.Context, rows []audit.Record) error {
	return insertAudit(ctx, s.pool, rows)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertAudit inserts rows in one statement through db.
func insertAudit(ctx context.Context, db execer, rows []audit.Record) error {
	sql, args := auditInsert(rows)
	if _, err := db.Exec(ctx, sql, args...); err != nil {
		return errAudit(err)
	}
	return nil
}

// auditInsert is the statement that inserts rows, and its arguments.
func auditInsert(rows []audit.Record) (string, []any) {
	cols, args := auditColumns(rows, 1)
	return `INSERT INTO audit_log ` + cols, args
}

// auditColumns is the column list and rows that insert rows into
// audit_log, with parameters numbered from first, and their arguments.
// Up to maxValuesRows rows go as VALUES, a parameter per field: unnesting
// fourteen arrays cost PostgreSQL more than the rest of a put's audit row
// (docs/performance.md). A larger batch goes as one array per column.
func auditColumns(rows []audit.Record, first int) (string, []any) {
	if len(rows) == 0 || len(rows) > maxValuesRows {
		return auditArrays(rows, first)
	}
	args := make([]any, 0, len(rows)*len(auditTypes))
	for _, r := range rows {
		args = append(args, r.ChainID, r.Lane, r.Seq, r.At, r.RequestID, r.Caller, r.Peer, r.Procedure,
			r.Target, r.Decision, r.Reason, r.Code, r.DurationUS, r.MAC)
	}
	return auditColumnsSQL(first, len(rows)), args
}

// maxValuesRows is the largest batch of audit rows inserted as VALUES:
// each count is a statement of its own in every connection's cache.
const maxValuesRows = 16

// auditTypes are audit_log's columns' types, in auditColumnList's order.
var auditTypes = []string{"bytea", "smallint", "bigint", "timestamptz", "text", "text",
	"text", "text", "text", "text", "text", "text", "bigint", "bytea"}

const auditColumnList = `(chain_id, lane, seq, at, request_id, caller, peer, procedure,
	         target, decision, reason, code, duration_us, mac)`

// auditArrays is auditColumns for a large batch: an array per column.
func auditArrays(rows []audit.Record, first int) (string, []any) {
	n := len(rows)
	var (
		chain             = make([][]byte, n)
		lane              = make([]int16, n)
		seq, dur          = make([]int64, n), make([]int64, n)
		at                = make([]time.Time, n)
		rid, caller, peer = make([]string, n), make([]string, n), make([]string, n)
		proc, target, dec = make([]string, n), make([]string, n), make([]string, n)
		reason, code      = make([]string, n), make([]string, n)
		mac               = make([][]byte, n)
	)
	for i, r := range rows {
		chain[i], lane[i], seq[i], at[i] = r.ChainID, r.Lane, r.Seq, r.At
		rid[i], caller[i], peer[i], proc[i] = r.RequestID, r.Caller, r.Peer, r.Procedure
		target[i], dec[i], reason[i], code[i] = r.Target, r.Decision, r.Reason, r.Code
		dur[i], mac[i] = r.DurationUS, r.MAC
	}
	return auditColumnsSQL(first, 0), []any{chain, lane, seq, at, rid, caller, peer, proc, target, dec, reason, code, dur, mac}
}

// auditColumnsText caches auditColumnsSQL by its arguments.
var auditColumnsText sync.Map

// auditColumnsSQL is the text of auditColumns, its placeholders numbered
// from first: n rows of VALUES, or (n = 0) an array per column.
func auditColumnsSQL(first, n int) string {
	key := [2]int{first, n}
	if sql, ok := auditColumnsText.Load(key); ok {
		return sql.(string)
	}
	var b strings.Builder
	b.WriteString(auditColumnList)
	if n == 0 {
		params := make([]string, len(auditTypes))
		for i, t := range auditTypes {
			params[i] = fmt.Sprintf("$%d::%s[]", first+i, t)
		}
		b.WriteString(`
	  SELECT u.chain_id, u.lane, u.seq, u.at, u.request_id, u.caller, u.peer, u.procedure,
	         u.target, u.decision, u.reason, u.code, u.duration_us, u.mac
	  FROM unnest(` + strings.Join(params, ", ") + `)
	       AS u(chain_id, lane, seq, at, request_id, caller, peer, procedure, target, decision, reason, code, duration_us, mac)`)
	} else {
		b.WriteString("\n\t  VALUES ")
		p := first
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j, t := range auditTypes {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "$%d::%s", p, t)
				p++
			}
			b.WriteByte(')')
		}
	}
	sql := b.String()
	auditColumnsText.Store(key, sql)
	return sql
}

// AuditKeyID returns the data key id of the audit MAC key, if one exists.
func (s *Store) AuditKeyID(ctx context.Context) ([]byte, error) {
	var id []byte
	err := s.pool.QueryRow(ctx, `SELECT dek_id FROM audit_keys WHERE id = 1`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return id, dbError(ctx, "read audit key", err)
}

// SetAuditKey records dekID as the audit MAC key unless one is recorded
// already, and returns the one in force.
func (s *Store) SetAuditKey(ctx context.Context, dekID []byte) ([]byte, error) {
	var id []byte
	err := s.pool.QueryRow(ctx,
		`WITH ins AS (
		   INSERT INTO audit_keys (id, dek_id) VALUES (1, $1) ON CONFLICT (id) DO NOTHING RETURNING dek_id
		 )
		 SELECT dek_id FROM ins UNION ALL SELECT dek_id FROM audit_keys WHERE id = 1 LIMIT 1`,
		dekID).Scan(&id)
	return id, dbError(ctx, "record audit key", err)
}

// AuditRecords returns records matching f, newest first, and whether more
// follow.
func (s *Store) AuditRecords(ctx context.Context, f audit.Filter) ([]audit.Record, bool, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT id, chain_id, lane, seq, at, request_id, caller, peer, procedure, target, decision, reason, code, duration_us, mac
		 FROM audit_log
		 WHERE ($1::timestamptz IS NULL OR at >= $1)
		   AND ($2::timestamptz IS NULL OR at <= $2)
		   AND ($3 = '' OR caller = $3)
		   AND ($4 = '' OR starts_with(target, $4))
		   AND ($5 = '' OR procedure = $5 OR right(procedure, length($5)) = $5)
		   AND ($6 = '' OR decision = $6)
		   AND ($7::timestamptz IS NULL OR (at, id) < ($7, $8))
		 ORDER BY at DESC, id DESC
		 LIMIT $9`,
		f.Since, f.Until, f.Caller, f.TargetPrefix, f.Procedure, f.Decision, f.BeforeAt, f.BeforeID, f.Limit+1)
	if err != nil {
		return nil, false, dbError(ctx, "list audit records", err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, false, dbError(ctx, "list audit records", err)
	}
	if len(out) > f.Limit {
		return out[:f.Limit], true, nil
	}
	return out, false, nil
}

func scanAudit(row pgx.CollectableRow) (audit.Record, error) {
	var r audit.Record
	err := row.Scan(&r.ID, &r.ChainID, &r.Lane, &r.Seq, &r.At, &r.RequestID, &r.Caller, &r.Peer, &r.Procedure,
		&r.Target, &r.Decision, &r.Reason, &r.Code, &r.DurationUS, &r.MAC)
	return r, err
}

// AuditCheckpoints returns every checkpoint.
func (s *Store) AuditCheckpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT chain_id, lane, seq, last_mac, mac FROM audit_checkpoints`)
	if err != nil {
		return nil, dbError(ctx, "read audit checkpoints", err)
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Checkpoint, error) {
		var c audit.Checkpoint
		err := row.Scan(&c.ChainID, &c.Lane, &c.Seq, &c.LastMAC, &c.MAC)
		return c, err
	})
	return cps, dbError(ctx, "read audit checkpoints", err)
}

// ScanAudit calls fn for every record, ordered by chain, lane and seq,
// without holding them all in memory. fn's error stops the scan.
func (s *Store) ScanAudit(ctx context.Context, fn func(audit.Record) error) error {
	return dbError(ctx, "scan audit log", pgx.BeginTxFunc(ctx, s.pool,
		pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			// Verification may read many rows: no statement timeout here.
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx,
				`SELECT id, chain_id, lane, seq, at, request_id, caller, peer, procedure, target, decision, reason, code, duration_us, mac
				 FROM audit_log ORDER BY chain_id, lane, seq, id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				r, err := scanAudit(rows)
				if err != nil {
					return err
				}
				if err := fn(r); err != nil {
					return err
				}
			}
			return rows.Err()
		}))
}

// PruneAudit deletes, in one audited transaction, the records older than
// before: for each chain it writes cps (made by the caller, MACed) and
// deletes the chain's records up to the checkpoint's seq; unauthenticated
// records older than before go too. lastPruned tells the caller which
// (seq, mac) each chain prunes up to. Nexus's role may not update or
// delete audit rows: the writing and deleting is done by the SECURITY
// DEFINER functions of migration 0007, which cut a chain only at a
// checkpoint they write.
func (s *Store) PruneAudit(ctx context.Context, rec *audit.Entry, before time.Time,
	checkpoint func(chain []byte, lane int16, seq int64, mac []byte) ([]byte, error),
) (deleted, checkpoints int64, err error) {
	// The counts are the outcome a retry (same idempotency key) gets.
	type pruned struct{ Deleted, Checkpoints int64 }
	var out pruned
	out, _, err = mutateOutcome(ctx, s, rec, func(tx pgx.Tx) (pruned, error) {
		var deleted, checkpoints int64
		err := func() error {
			rows, err := tx.Query(ctx,
				// Per chain, the end of the oldest run of records all older than
				// before: a record older than before but after a newer one in
				// the chain stays, so a chain is only ever cut at one point.
				`SELECT DISTINCT ON (a.chain_id, a.lane) a.chain_id, a.lane, a.seq, a.mac
			 FROM audit_log a
			 WHERE a.lane >= 0 AND a.at < $1
			   AND NOT EXISTS (SELECT 1 FROM audit_log b
			                   WHERE b.chain_id = a.chain_id AND b.lane = a.lane AND b.seq <= a.seq AND b.at >= $1)
			 ORDER BY a.chain_id, a.lane, a.seq DESC`, before)
			if err != nil {
				return err
			}
			type last struct {
				chain []byte
				lane  int16
				seq   int64
				mac   []byte
			}
			lasts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (last, error) {
				var l last
				err := row.Scan(&l.chain, &l.lane, &l.seq, &l.mac)
				return l, err
			})
			if err != nil {
				return err
			}
			for _, l := range lasts {
				cpMAC, err := checkpoint(l.chain, l.lane, l.seq, l.mac)
				if err != nil {
					return err
				}
				var n int64
				if err := tx.QueryRow(ctx, `SELECT audit_prune_chain($1, $2, $3, $4, $5)`,
					l.chain, l.lane, l.seq, l.mac, cpMAC).Scan(&n); err != nil {
					return err
				}
				deleted += n
				checkpoints++
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT audit_prune_unauthenticated($1)`, before).Scan(&n); err != nil {
				return err
			}
			deleted += n
			return nil
		}()
		return pruned{deleted, checkpoints}, err
	})
	deleted, checkpoints = out.Deleted, out.Checkpoints
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "22023" { // invalid_parameter_value, from the prune functions
		return 0, 0, fault.New(fault.Invalid, "before: %s", pgErr.Message)
	}
	if err != nil {
		return 0, 0, dbError(ctx, "prune audit log", err)
	}
	return deleted, checkpoints, nil
}
