package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// storedColumns are a secret's columns, in the order scanStored reads them.
const storedColumns = `s.incarnation, s.head, s.current_version, s.oldest_version, s.max_versions,
	s.cas_required, s.custom_metadata, s.created_at, s.updated_at`

func storedDest(st *secret.Stored) []any {
	return []any{&st.Incarnation, &st.Head, &st.Current, &st.Oldest, &st.MaxVersions,
		&st.CASRequired, &st.LegacyCustom, &st.CreatedAt, &st.UpdatedAt}
}

// Span is the count and range of a secret's version rows.
type Span struct {
	Count, Lowest, Highest int64
}

// ReadSecret returns, in one statement, the secret at path, the row of the
// requested version (0: the one its current_version column names; nil when
// there is no such row) and the span of all its rows, for the caller to
// check against the sealed head. The span counts the rows from the oldest
// version on and, as one more below it, any row under that (a probe
// through the index, which steps over the rows pruned since the last
// vacuum without reading them). A missing secret is fault.NotFound.
func (s *Store) ReadSecret(ctx context.Context, path string, version int64) (secret.Stored, *secret.Row, Span, error) {
	if version < 0 {
		return secret.Stored{}, nil, Span{}, fault.New(fault.Invalid, "version: must not be negative, got %d", version)
	}
	st := secret.Stored{Path: path}
	var (
		r    secret.Row
		ver  *int64
		by   *string
		at   *time.Time
		span Span
		lo   *int64
		hi   *int64
		low  bool
	)
	dest := append(storedDest(&st), &ver, &r.DEKID, &r.Sealed, &by, &at, &r.DeletedAt, &r.DestroyedAt,
		&span.Count, &lo, &hi, &low)
	err := s.pool.QueryRow(ctx,
		`SELECT `+storedColumns+`,
		        v.version, v.dek_id, v.sealed, v.created_by, v.created_at, v.deleted_at, v.destroyed_at,
		        span.n, span.lo, span.hi,
		        EXISTS (SELECT 1 FROM secret_versions y WHERE y.path = s.path AND y.version < s.oldest_version)
		 FROM secrets s
		 LEFT JOIN secret_versions v
		   ON v.path = s.path
		  AND v.version = CASE WHEN $2::bigint = 0 THEN s.current_version ELSE $2::bigint END
		 CROSS JOIN LATERAL (SELECT count(*), min(x.version), max(x.version)
		                     FROM secret_versions x
		                     WHERE x.path = s.path AND x.version >= s.oldest_version) AS span(n, lo, hi)
		 WHERE s.path = $1`,
		path, version).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return secret.Stored{}, nil, Span{}, errNotFound(path)
	}
	if err != nil {
		return secret.Stored{}, nil, Span{}, dbError(ctx, "read secret "+path, err)
	}
	if lo != nil {
		span.Lowest, span.Highest = *lo, *hi
	}
	if low {
		// A row below the oldest version: never written by SPIKE (every
		// write prunes those). Count it, as the lowest row (the rows
		// counted above are all at or above the oldest version).
		span.Lowest = st.Oldest - 1
		if span.Count == 0 {
			span.Highest = span.Lowest
		}
		span.Count++
	}
	if ver == nil {
		return st, nil, span, nil
	}
	r.Version, r.CreatedBy, r.CreatedAt = *ver, *by, *at
	return st, &r, span, nil
}

// SecretRows returns the secret at path and all its version rows, oldest
// first, from one snapshot. A missing secret is fault.NotFound.
func (s *Store) SecretRows(ctx context.Context, path string) (secret.Stored, []secret.Row, error) {
	var (
		st   secret.Stored
		rows []secret.Row
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		st, rows, err = readRows(ctx, tx, path)
		return err
	})
	if err != nil {
		return secret.Stored{}, nil, dbError(ctx, "read secret "+path, err)
	}
	return st, rows, nil
}

// queryer is a connection or a transaction.
type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readRows(ctx context.Context, q queryer, path string) (secret.Stored, []secret.Row, error) {
	st := secret.Stored{Path: path}
	err := q.QueryRow(ctx, `SELECT `+storedColumns+` FROM secrets s WHERE s.path = $1`, path).Scan(storedDest(&st)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil, errNotFound(path)
	}
	if err != nil {
		return st, nil, err
	}
	rs, err := q.Query(ctx,
		`SELECT version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at
		 FROM secret_versions WHERE path = $1 ORDER BY version`, path)
	if err != nil {
		return st, nil, err
	}
	rows, err := pgx.CollectRows(rs, func(row pgx.CollectableRow) (secret.Row, error) {
		var r secret.Row
		err := row.Scan(&r.Version, &r.DEKID, &r.Sealed, &r.CreatedBy, &r.CreatedAt, &r.DeletedAt, &r.DestroyedAt)
		r.Format = envelope.Format(r.Sealed)
		return r, err
	})
	return st, rows, err
}

// Change computes a secret's write from its locked row (nil when the
// secret does not exist yet) and the states of its version rows, oldest
// first (version, writer, deleted and destroyed marks; no data). It
// returns the write and the outcome to keep under the request's
// idempotency key.
type Change func(cur *secret.Stored, rows []secret.Row) (secret.Write, []byte, error)

// maxWriteAttempts bounds the retries of a write that lost a race to create
// the same secret, or to apply the same idempotency key.
const maxWriteAttempts = 3

// WriteSecret changes the secret at path in two round trips to the
// database. The first begins a transaction, locks and reads the secret's
// row and the states of its versions, and looks up rec's idempotency key;
// change then computes the write (sealing happens there, outside the
// database); the second writes the head, inserts, prunes, marks and
// reseals version rows, writes the audit record and the outcome, and
// commits. When the key already has an outcome, change does not run,
// nothing is written, and the stored outcome is returned with replayed
// set. The commit is not cut short by ctx; a connection lost during it is
// fault.Unknown.
func (s *Store) WriteSecret(ctx context.Context, rec *audit.Entry, path string, change Change) (outcome []byte, replayed bool, err error) {
	if rec == nil {
		return nil, false, errNoRecord
	}
	return s.writeSecretRetrying(ctx, rec, path, change, false)
}

// AdoptSecret is WriteSecret for sealing a head for a secret written before
// heads existed: maintenance, not a request, so without an audit record or
// idempotency key. The rows given to change carry the sealed values of a
// secret without a head.
func (s *Store) AdoptSecret(ctx context.Context, path string, change Change) error {
	_, _, err := s.writeSecretRetrying(ctx, nil, path, change, false)
	return err
}

// ResealSecret is WriteSecret for sealing a secret's head and values again
// under another data key (spike operator rewrap): maintenance, without an
// audit record of its own (the rewrap request has one) or idempotency
// key. The rows given to change carry their sealed values and data key
// ids, also when the secret has a head.
func (s *Store) ResealSecret(ctx context.Context, path string, change Change) error {
	_, _, err := s.writeSecretRetrying(ctx, nil, path, change, true)
	return err
}

func (s *Store) writeSecretRetrying(ctx context.Context, rec *audit.Entry, path string, change Change, values bool) ([]byte, bool, error) {
	for attempt := 1; ; attempt++ {
		outcome, replayed, err := s.writeSecret(ctx, rec, path, change, values)
		// Lost a race to create the secret, or to apply the same key.
		raced := errors.Is(err, errCreatedMeanwhile) ||
			isUniqueViolation(err, "secrets_pkey") || isUniqueViolation(err, "idempotency_keys_pkey")
		if attempt < maxWriteAttempts && raced {
			continue
		}
		if errors.Is(err, errCreatedMeanwhile) {
			return nil, false, secret.ErrTampered(path, "it has version rows but no row of its own")
		}
		if err != nil {
			return nil, false, dbError(ctx, "write secret "+path, err)
		}
		return outcome, replayed, nil
	}
}

// errCreatedMeanwhile: the secret had no row, but version rows.
var errCreatedMeanwhile = errors.New("the secret was created meanwhile")

// headRead is what the first round trip of a write reads.
type headRead struct {
	cur    *secret.Stored
	rows   []secret.Row
	stored *storedOutcome
	// xid is the transaction's id, read for a request's write (its change
	// log row is authenticated with it).
	xid uint64
	// low is set when a version row lies below the secret's oldest
	// version: every write prunes those, so one is always tampering.
	low bool
}

func (s *Store) writeSecret(ctx context.Context, rec *audit.Entry, path string, change Change, values bool) ([]byte, bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer conn.Release()
	open := true
	defer func() {
		if open {
			rollback(ctx, conn)
		}
	}()

	var (
		r     audit.Replay
		keyed bool
	)
	if rec != nil {
		r, keyed = rec.Replay()
	}
	hr, err := readHead(ctx, conn, path, r, keyed, values, rec != nil)
	if err != nil {
		return nil, false, err
	}
	if hr.stored != nil {
		if err := rec.CheckOutcome(hr.stored.hash, hr.stored.outcome, hr.stored.mac); err != nil {
			return nil, false, err
		}
		return hr.stored.outcome, true, nil
	}
	if hr.low {
		return nil, false, secret.ErrTampered(path, "it has a version row below its oldest retained version")
	}
	if hr.cur == nil && len(hr.rows) > 0 {
		// Created by another writer between the two reads (no row to lock
		// yet), or rows left without their secret: try again, and say the
		// latter if it persists.
		return nil, false, errCreatedMeanwhile
	}
	w, outcome, err := change(hr.cur, hr.rows)
	if err != nil {
		return nil, false, err
	}
	if w.Create != (hr.cur == nil) {
		return nil, false, fmt.Errorf("write secret %s: the change and the stored row disagree on whether it exists", path)
	}

	// Round trip 2: write everything and commit, in two statements.
	var records []audit.Record
	if rec != nil {
		if records, err = rec.Rows(ctx); err != nil {
			return nil, false, err
		}
	}
	done := func(committed bool) {
		if rec != nil {
			rec.Done(committed)
		}
	}
	aborted := func() {
		if rec != nil {
			rec.Aborted()
		}
	}
	var kept *keptOutcome
	if keyed {
		mac, err := rec.OutcomeMAC(outcome)
		if err != nil {
			aborted()
			return nil, false, err
		}
		kept = &keptOutcome{r: r, outcome: outcome, mac: mac}
	}
	var changeMAC []byte
	if w.Change != 0 {
		if rec == nil {
			return nil, false, fmt.Errorf("write secret %s: a change for watchers without its request", path)
		}
		if changeMAC, err = rec.ChangeMAC(hr.xid, path, w.Incarnation, int16(w.Change), w.Changed()); err != nil {
			aborted()
			return nil, false, err
		}
	}
	// The rows to prune: the rows read under the lock are all there are.
	var pruned []int64
	for _, r := range hr.rows {
		if r.Version < w.Oldest {
			pruned = append(pruned, r.Version)
		}
	}
	sql, args := writeSecretStatement(path, w, pruned, records, kept, changeMAC)
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	steps := []string{"write"}
	b.Queue("COMMIT")
	steps = append(steps, "commit")
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	br := conn.SendBatch(commitCtx, b)
	failed := ""
	for _, step := range steps {
		if _, err = br.Exec(); err != nil {
			failed = step
			break
		}
	}
	closeErr := br.Close()
	if err == nil && closeErr != nil && failed == "" {
		// Every statement, the commit included, reported success: only
		// closing the batch failed.
		closeErr = nil
	}
	if err == nil {
		err = closeErr
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		open = false
		done(true)
		return outcome, false, nil
	case errors.As(err, &pgErr) && (failed != "commit" || commitRefused(pgErr)):
		// The database refused a statement before the commit (the rest
		// never ran), or refused the commit for a reason that aborts it:
		// nothing was committed.
		aborted()
		if isAuditError(pgErr) {
			return nil, false, errAudit(err)
		}
		return nil, false, err
	default:
		// The connection broke with the batch sent, or the session ended
		// during the commit: it may have committed.
		open = false
		done(false)
		return nil, false, fault.Wrap(fault.Unknown, err,
			"the database connection broke while committing: the change may or may not have been applied")
	}
}

// readHead is the first round trip of a write: begin, lock and read the
// secret's row, then, in one statement, read its version rows from its
// oldest version on (with their sealed values when it has no head yet, or
// when values asks for them), probe for any row below that, look up the
// idempotency key and, for a request, take the transaction's id (its
// change log row is authenticated with it). Below the oldest version lie
// the index entries of every version pruned since the table was last
// vacuumed: the probe steps over them only through the index, and only
// the retained rows are read.
func readHead(ctx context.Context, conn *pgxpool.Conn, path string, r audit.Replay, keyed, values, request bool) (headRead, error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`SELECT `+storedColumns+` FROM secrets s WHERE s.path = $1 FOR UPDATE`, path)
	// The rest in a statement of its own, so that its snapshot is taken
	// once the lock is held (within one statement, rows joined to a row
	// that had to be waited for would be read as they were before the
	// wait). One row at least: the key's outcome and the id on every row,
	// with a version each (none: their columns are NULL).
	var caller, key *string
	if keyed {
		caller, key = &r.Caller, &r.Key
	}
	// o is one row, computed once (a materialized CTE: joined inline,
	// its probes ran once per version row).
	b.Queue(`WITH o AS MATERIALIZED (
	           SELECT CASE WHEN $3 THEN pg_current_xact_id()::text END AS xid,
	                  $2 OR s.head IS NULL AS vals,
	                  coalesce(s.oldest_version, 0) AS oldest,
	                  EXISTS (SELECT 1 FROM secret_versions x
	                          WHERE x.path = $1 AND x.version < coalesce(s.oldest_version, 0)) AS low,
	                  k.request_hash, k.outcome, k.mac
	           FROM (SELECT) AS one
	           LEFT JOIN secrets s ON s.path = $1
	           LEFT JOIN idempotency_keys k ON k.caller = $4 AND k.key = $5)
	         SELECT o.xid, o.request_hash, o.outcome, o.mac, o.low,
	                v.version, v.deleted_at IS NOT NULL, v.destroyed_at IS NOT NULL, v.created_by,
	                coalesce(get_byte(v.sealed, 0), 0)::smallint,
	                CASE WHEN o.vals THEN v.sealed END, CASE WHEN o.vals THEN v.dek_id END
	         FROM o LEFT JOIN secret_versions v ON v.path = $1 AND v.version >= o.oldest`,
		path, values, request, caller, key)
	br := conn.SendBatch(ctx, b)
	hr := headRead{cur: &secret.Stored{Path: path}}
	err := func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		err := br.QueryRow().Scan(storedDest(hr.cur)...)
		if errors.Is(err, pgx.ErrNoRows) {
			hr.cur = nil
		} else if err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		marked := time.Unix(0, 0)
		hr.rows = []secret.Row{} // read, even if there are none
		for rows.Next() {
			var (
				xid                *string
				o                  storedOutcome
				low                bool
				version            *int64
				deleted, destroyed *bool
				createdBy          *string
				format             *int16
				row                secret.Row
			)
			if err := rows.Scan(&xid, &o.hash, &o.outcome, &o.mac, &low, &version, &deleted, &destroyed,
				&createdBy, &format, &row.Sealed, &row.DEKID); err != nil {
				return err
			}
			if hr.stored == nil && o.hash != nil {
				hr.stored = &o
			}
			hr.low = hr.low || low
			if request && hr.xid == 0 {
				if xid == nil {
					return errors.New("no transaction id")
				}
				if hr.xid, err = parseXID(*xid); err != nil {
					return err
				}
			}
			if version == nil {
				continue // no versions
			}
			row.Version, row.CreatedBy, row.Format = *version, *createdBy, byte(*format)
			if *deleted {
				row.DeletedAt = &marked
			}
			if *destroyed {
				row.DestroyedAt = &marked
			}
			hr.rows = append(hr.rows, row)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if hr.cur == nil && len(hr.rows) == 0 {
			hr.rows = nil
		}
		slices.SortFunc(hr.rows, func(a, b secret.Row) int { return cmp.Compare(a.Version, b.Version) })
		return nil
	}()
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	return hr, err
}

type storedOutcome struct{ hash, outcome, mac []byte }

// Outcome returns the first outcome kept under rec's idempotency key, if
// rec has one and it was applied before; it is checked as WriteSecret
// checks it.
func (s *Store) Outcome(ctx context.Context, rec *audit.Entry) ([]byte, bool, error) {
	r, keyed := rec.Replay()
	if !keyed {
		return nil, false, nil
	}
	var o storedOutcome
	err := s.pool.QueryRow(ctx, `SELECT request_hash, outcome, mac FROM idempotency_keys WHERE caller = $1 AND key = $2`,
		r.Caller, r.Key).Scan(&o.hash, &o.outcome, &o.mac)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, dbError(ctx, "read idempotency key", err)
	}
	if err := rec.CheckOutcome(o.hash, o.outcome, o.mac); err != nil {
		return nil, false, err
	}
	return o.outcome, true, nil
}

// commitRefused reports whether a COMMIT that failed with err certainly
// did not commit: a serialization failure, a deadlock, a deferred
// constraint or an aborted transaction. Anything else (a FATAL or PANIC, an
// I/O error) may have happened after the commit record was written.
func commitRefused(err *pgconn.PgError) bool {
	if err.Severity == "FATAL" || err.Severity == "PANIC" {
		return false
	}
	switch {
	case err.Code == "40001", err.Code == "40P01", err.Code == "25P02", strings.HasPrefix(err.Code, "23"):
		return true
	}
	return false
}

// rollback ends the connection's transaction, if any; a connection that
// cannot is closed, so that the pool does not reuse it.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if _, err := conn.Exec(rctx, "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(rctx)
	}
}

// keptOutcome is a mutation's outcome to keep under its idempotency key.
type keptOutcome struct {
	r            audit.Replay
	outcome, mac []byte
}

// writeSecretStatement writes a secret in one statement: the row with its
// sealed head, the new version, the pruning, the version states and
// reseals, the change log's row (w.Change), the audit records and the
// outcome kept under the idempotency key (kept, when not nil). Only the parts a write needs are in it: each
// part left out is a scan saved.
func writeSecretStatement(path string, w secret.Write, pruned []int64, records []audit.Record, kept *keptOutcome, changeMAC []byte) (string, []any) {
	// The text depends only on the write's shape; it is built once per
	// shape, while every write still collects its own arguments below.
	shape := writeShape(w, pruned, records, kept)
	cached, known := writeStatements.Load(shape)
	var args []any
	arg := func(v any, typ string) string {
		args = append(args, v)
		if known {
			return ""
		}
		return "$" + strconv.Itoa(len(args)) + "::" + typ
	}
	sql := buildWriteStatement(path, w, pruned, records, kept, changeMAC, func() int { return len(args) }, arg)
	if known {
		return cached.(string), args
	}
	writeStatements.Store(shape, sql)
	return sql, args
}

// writeStatements caches the text of writeSecretStatement by shape.
var writeStatements sync.Map

// writeShape is what the text of a write statement depends on: which
// parts it has, and how its audit records are inserted (auditColumns).
func writeShape(w secret.Write, pruned []int64, records []audit.Record, kept *keptOutcome) uint32 {
	var s uint32
	for i, b := range []bool{w.Create, w.Insert != nil, len(w.Deleted) > 0, len(w.Undeleted) > 0,
		len(w.Destroyed) > 0, len(w.Reseal) > 0, kept != nil, w.Change != 0, len(pruned) > 0} {
		if b {
			s |= 1 << i
		}
	}
	return s | uint32(min(len(records), maxValuesRows+1))<<9
}

// buildWriteStatement passes the write's arguments to arg, in order, and
// returns its text (meaningless when arg returns no placeholders); n is the
// number of arguments passed so far.
func buildWriteStatement(path string, w secret.Write, pruned []int64, records []audit.Record, kept *keptOutcome, changeMAC []byte,
	n func() int, arg func(v any, typ string) string) string {
	p := arg(path, "text")
	var head string
	if w.Create {
		head = `INSERT INTO secrets (path, incarnation, head, current_version, oldest_version, max_versions, cas_required)
		  VALUES (` + p + `, ` + arg(w.Incarnation, "bytea") + `, ` + arg(w.Head, "bytea") + `, ` +
			arg(w.Current, "bigint") + `, ` + arg(w.Oldest, "bigint") + `, ` + arg(w.MaxVersions, "integer") + `, ` +
			arg(w.CASRequired, "boolean") + `) RETURNING path`
	} else {
		head = `UPDATE secrets SET incarnation = ` + arg(w.Incarnation, "bytea") + `, head = ` + arg(w.Head, "bytea") +
			`, current_version = ` + arg(w.Current, "bigint") + `, oldest_version = ` + arg(w.Oldest, "bigint") +
			`, max_versions = ` + arg(w.MaxVersions, "integer") + `, cas_required = ` + arg(w.CASRequired, "boolean") +
			`, custom_metadata = NULL, updated_at = now() WHERE path = ` + p + ` RETURNING path`
	}
	parts := []string{`head AS (` + head + `)`}
	if r := w.Insert; r != nil {
		parts = append(parts, `ins AS (INSERT INTO secret_versions (path, version, dek_id, sealed, created_by, created_at)
		  SELECT path, `+arg(r.Version, "bigint")+`, `+arg(r.DEKID, "bytea")+`, `+arg(r.Sealed, "bytea")+`, `+
			arg(r.CreatedBy, "text")+`, `+arg(r.CreatedAt, "timestamptz")+` FROM head)`)
	}
	if len(pruned) > 0 {
		// From the lowest row read: an index range that starts below it
		// would step over the rows pruned before (dead until vacuumed).
		parts = append(parts, `pruned AS (DELETE FROM secret_versions WHERE path = `+p+
			` AND version >= `+arg(slices.Min(pruned), "bigint")+` AND version < `+arg(w.Oldest, "bigint")+`)`)
	}
	if len(w.Deleted) > 0 {
		parts = append(parts, `deleted AS (UPDATE secret_versions SET deleted_at = now()
		  WHERE path = `+p+` AND version = ANY(`+arg(w.Deleted, "bigint[]")+`) AND deleted_at IS NULL)`)
	}
	if len(w.Undeleted) > 0 {
		parts = append(parts, `undeleted AS (UPDATE secret_versions SET deleted_at = NULL
		  WHERE path = `+p+` AND version = ANY(`+arg(w.Undeleted, "bigint[]")+`))`)
	}
	if len(w.Destroyed) > 0 {
		parts = append(parts, `destroyed AS (UPDATE secret_versions SET sealed = NULL, destroyed_at = now()
		  WHERE path = `+p+` AND version = ANY(`+arg(w.Destroyed, "bigint[]")+`) AND destroyed_at IS NULL)`)
	}
	if len(w.Reseal) > 0 {
		versions, sealed := make([]int64, len(w.Reseal)), make([][]byte, len(w.Reseal))
		for i, r := range w.Reseal {
			versions[i], sealed[i] = r.Version, r.Sealed
		}
		parts = append(parts, `resealed AS (UPDATE secret_versions v SET sealed = u.sealed, dek_id = `+arg(w.Reseal[0].DEKID, "bytea")+`
		  FROM unnest(`+arg(versions, "bigint[]")+`, `+arg(sealed, "bytea[]")+`) AS u(version, sealed)
		  WHERE v.path = `+p+` AND v.version = u.version)`)
	}
	if len(records) > 0 {
		cols, auditArgs := auditColumns(records, n()+1)
		for _, a := range auditArgs {
			arg(a, "") // placeholders are in cols
		}
		parts = append(parts, `audited AS (INSERT INTO audit_log `+cols+`)`)
	}
	if w.Change != 0 {
		// The change log's row, in the write's own statement: no round
		// trip more, and no NOTIFY (which would serialise commits).
		parts = append(parts, `changed AS (INSERT INTO secret_changes (xid, path, kind, versions, mac)
		  SELECT pg_current_xact_id(), path, `+arg(int16(w.Change), "smallint")+`, `+arg(w.Changed(), "bigint[]")+`, `+
			arg(changeMAC, "bytea")+` FROM head)`)
	}
	if kept != nil {
		parts = append(parts, `kept AS (INSERT INTO idempotency_keys (caller, key, request_hash, outcome, mac)
		  VALUES (`+arg(kept.r.Caller, "text")+`, `+arg(kept.r.Key, "text")+`, `+arg(kept.r.RequestHash, "bytea")+`, `+
			arg(kept.outcome, "bytea")+`, `+arg(kept.mac, "bytea")+`))`)
	}
	return `WITH ` + strings.Join(parts, ",\n  ") + `
	  SELECT count(*) FROM head`
}

// isAuditError reports whether the statement failed on the audit trail's
// table (a constraint, a privilege): the request must then fail closed as
// an audit failure.
func isAuditError(err *pgconn.PgError) bool {
	return err.TableName == "audit_log" || strings.HasPrefix(err.ConstraintName, "audit_log") ||
		strings.Contains(err.Message, "audit_log")
}

func errNotFound(path string) error {
	return fault.New(fault.NotFound, "secret %s not found", path)
}
