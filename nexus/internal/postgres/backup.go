package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
)

// How a backed-up table is put back by Restore.
type loadMode int

const (
	// loadCopy: COPY the rows as they were.
	loadCopy loadMode = iota + 1
	// loadAuditLog: COPY without the id, which the sequence assigns anew
	// in the rows' (id) order: records written before the restore (an
	// uninitialised Nexus audits its requests too) keep theirs.
	loadAuditLog
	// loadCheckpoint: through restore_audit_checkpoint (migration 0009):
	// the serving role may not insert checkpoints itself.
	loadCheckpoint
	// loadGeneration: UPDATE the one row every schema has.
	loadGeneration
	// loadNot: backed up for the record, not restored (the owner's
	// setting of the target database stays).
	loadNot
)

// BackupTable is one table of a backup: its columns, as the file names
// them, in file order.
type BackupTable struct {
	Name    string
	Columns []string
	// selects are the SELECT list (a column, or an expression for a type
	// the file has no kind for); order is the ORDER BY.
	selects []string
	order   string
	load    loadMode
}

func table(name, order string, load loadMode, columns ...string) BackupTable {
	return BackupTable{Name: name, Columns: columns, selects: columns, order: order, load: load}
}

// backupTables are the tables a backup holds, in file and restore order:
// checkpoints first (restore_audit_checkpoint accepts them only in a
// database without a keyring or authenticated audit records), then the
// keyring (a concurrent init conflicts on it at once), then each table
// after those its rows refer to. Admin tokens and idempotency outcomes
// are not backed up: every admin token issued before a restore is invalid
// after it, and a request retried across a restore is applied again.
var backupTables = []BackupTable{
	table("audit_checkpoints", "chain_id, lane", loadCheckpoint, "chain_id", "lane", "seq", "last_mac", "mac", "created_at"),
	table("root_keyrings", "id", loadCopy, "id", "keyring_id", "kdf_params", "ciphertext", "created_at", "sealed", "epoch"),
	table("data_keys", "id", loadCopy, "id", "root_key_version", "wrapped", "created_at", "retired_at"),
	table("audit_keys", "id", loadCopy, "id", "dek_id", "created_at"),
	table("secrets", "path", loadCopy, "path", "current_version", "created_at", "updated_at", "oldest_version",
		"max_versions", "cas_required", "custom_metadata", "incarnation", "head"),
	table("secret_versions", "path, version", loadCopy, "path", "version", "dek_id", "sealed", "created_by",
		"created_at", "deleted_at", "destroyed_at"),
	table("policies", "name", loadCopy, "name", "sealed", "created_at", "updated_at"),
	table("policy_generation", "id", loadGeneration, "id", "generation"),
	table("policy_manifest", "id", loadCopy, "id", "sealed", "updated_at"),
	table("audit_log", "id", loadAuditLog, "id", "chain_id", "lane", "seq", "at", "request_id", "caller", "peer",
		"procedure", "target", "decision", "reason", "code", "duration_us", "mac"),
	func() BackupTable {
		t := table("audit_settings", "id", loadNot, "id", "min_prune_age")
		t.selects = []string{"id", "min_prune_age::text"}
		return t
	}(),
}

// BackupTables returns the tables a backup of this schema holds, in file
// order.
func BackupTables() []BackupTable { return backupTables }

// Snapshot is one consistent, read-only view of the database.
type Snapshot struct{ tx pgx.Tx }

// snapshotLimits replace the serving limits inside a backup's or a
// restore's transaction, which may run as long as its stream (an hour at
// most: a backup's SELECT streams a whole table to a client that may be
// slow); a restore waiting for its next piece is cut after a few minutes
// (the stream itself after two).
var snapshotLimits = []string{
	"SET LOCAL statement_timeout = '1h'",
	"SET LOCAL idle_in_transaction_session_timeout = '5min'",
}

// Snapshot runs fn in one read-only repeatable-read transaction: every
// read of fn sees the database as it was at its first statement.
func (s *Store) Snapshot(ctx context.Context, fn func(*Snapshot) error) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			for _, stmt := range snapshotLimits {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return fn(&Snapshot{tx: tx})
		})
	return dbError(ctx, "backup", err)
}

// SnapshotInfo is what a backup's header says of the database.
type SnapshotInfo struct {
	SchemaVersion int64
	KeyringID     []byte
	Epoch         uint64
	// AuditKey is the wrapped data key that is the audit MAC key.
	AuditKey envelope.WrappedKey
	// Rows counts each table's rows, in BackupTables order.
	Rows []int64
}

// Info reads the header's facts. A database without a keyring or an
// audit key has nothing to back up (FailedPrecondition).
func (sn *Snapshot) Info(ctx context.Context) (SnapshotInfo, error) {
	var info SnapshotInfo
	var epoch int64
	err := sn.tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&info.SchemaVersion)
	if err != nil {
		return info, err
	}
	err = sn.tx.QueryRow(ctx, `SELECT keyring_id, epoch FROM root_keyrings WHERE id = 1`).Scan(&info.KeyringID, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, fault.New(fault.FailedPrecondition, "SPIKE is not initialised: there is nothing to back up").Because(fault.NotInitialised)
	}
	if err != nil {
		return info, err
	}
	info.Epoch = uint64(epoch)
	var version int32
	err = sn.tx.QueryRow(ctx,
		`SELECT d.id, d.root_key_version, d.wrapped FROM audit_keys a JOIN data_keys d ON d.id = a.dek_id WHERE a.id = 1`,
	).Scan(&info.AuditKey.ID, &version, &info.AuditKey.Wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		return info, fault.New(fault.FailedPrecondition, "SPIKE has no audit MAC key yet (it is made at the first unseal): unseal, then back up")
	}
	if err != nil {
		return info, err
	}
	info.AuditKey.RootKeyVersion = uint32(version)
	counts := make([]string, len(backupTables))
	for i, t := range backupTables {
		counts[i] = "(SELECT count(*) FROM " + t.Name + ")"
	}
	info.Rows = make([]int64, len(backupTables))
	dest := make([]any, len(backupTables))
	for i := range info.Rows {
		dest[i] = &info.Rows[i]
	}
	return info, sn.tx.QueryRow(ctx, "SELECT "+strings.Join(counts, ", ")).Scan(dest...)
}

// Scan calls fn with every row of t, in a fixed order, its values as pgx
// scans them (nil for NULL). fn must not keep the slice.
func (sn *Snapshot) Scan(ctx context.Context, t BackupTable, fn func([]any) error) error {
	rows, err := sn.tx.Query(ctx, "SELECT "+strings.Join(t.selects, ", ")+" FROM "+t.Name+" ORDER BY "+t.order)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Restoring is a restore in progress: one transaction that Commit ends;
// until then nothing of it is visible.
type Restoring struct {
	tx          pgx.Tx
	rec         *audit.Entry
	pruneAge    string
	backupPrune string
}

// BeginRestore starts a restore into this database, which must be empty:
// migrated, but never initialised (nothing but unauthenticated audit
// records, which an uninitialised Nexus writes for its requests, and the
// rows every migration makes). rec is the restore request's audit record,
// committed with the rows.
func (s *Store) BeginRestore(ctx context.Context, rec *audit.Entry) (*Restoring, error) {
	if rec == nil {
		return nil, errNoRecord
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, dbError(ctx, "restore", err)
	}
	r := &Restoring{tx: tx, rec: rec}
	if err := r.begin(ctx); err != nil {
		r.Rollback(ctx)
		return nil, dbError(ctx, "restore", err)
	}
	return r, nil
}

func (r *Restoring) begin(ctx context.Context) error {
	for _, stmt := range snapshotLimits {
		if _, err := r.tx.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	checks := []struct{ what, sql string }{
		{"a root keyring", "SELECT count(*) FROM root_keyrings"},
		{"data keys", "SELECT count(*) FROM data_keys"},
		{"an audit key", "SELECT count(*) FROM audit_keys"},
		{"secrets", "SELECT count(*) FROM secrets"},
		{"policies", "SELECT count(*) FROM policies"},
		{"a policy manifest", "SELECT count(*) FROM policy_manifest"},
		{"policy changes", "SELECT coalesce(max(generation), 0) FROM policy_generation"},
		{"admin tokens", "SELECT count(*) FROM admin_tokens"},
		{"idempotency outcomes", "SELECT count(*) FROM idempotency_keys"},
		{"authenticated audit records", "SELECT count(*) FROM audit_log WHERE lane >= 0"},
		{"audit checkpoints", "SELECT count(*) FROM audit_checkpoints"},
	}
	var found []string
	for _, c := range checks {
		var n int64
		if err := r.tx.QueryRow(ctx, c.sql).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			found = append(found, fmt.Sprintf("%s (%d)", c.what, n))
		}
	}
	if len(found) > 0 {
		return fault.New(fault.FailedPrecondition,
			"restore refused: the database is not empty: it holds %s. Restore only into a database that was migrated and never initialised",
			strings.Join(found, ", "))
	}
	return r.tx.QueryRow(ctx, "SELECT min_prune_age::text FROM audit_settings WHERE id = 1").Scan(&r.pruneAge)
}

// Load inserts rows of t (values in t.Columns order, as backup.SQL gives
// them).
func (r *Restoring) Load(ctx context.Context, t BackupTable, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	err := r.load(ctx, t, rows)
	var pgErr *pgconn.PgError
	switch {
	case isUniqueViolation(err, "root_keyrings_pkey"), isUniqueViolation(err, "audit_checkpoints_pkey"),
		errors.As(err, &pgErr) && pgErr.Code == "55000": // restore_audit_checkpoint: initialised meanwhile
		return fault.New(fault.FailedPrecondition, "restore refused: SPIKE was initialised, or restored by another request, while this restore ran; nothing was restored by this one")
	}
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		// Data that does not fit the schema (a value out of range, a
		// broken reference or constraint): the hashes will not match
		// either, but the database said it first.
		return fault.Wrap(fault.DataLoss, err, "backup refused: rows of %s do not fit the schema (%s): the file is damaged or was altered", t.Name, pgErr.Code)
	}
	return dbError(ctx, "restore "+t.Name, err)
}

func (r *Restoring) load(ctx context.Context, t BackupTable, rows [][]any) error {
	switch t.load {
	case loadCopy:
		_, err := r.tx.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Columns, pgx.CopyFromRows(rows))
		return err
	case loadAuditLog:
		trimmed := make([][]any, len(rows))
		for i, row := range rows {
			trimmed[i] = row[1:]
		}
		_, err := r.tx.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Columns[1:], pgx.CopyFromRows(trimmed))
		return err
	case loadCheckpoint:
		for _, row := range rows {
			if _, err := r.tx.Exec(ctx, "SELECT restore_audit_checkpoint($1, $2, $3, $4, $5, $6)", row...); err != nil {
				return err
			}
		}
		return nil
	case loadGeneration:
		for _, row := range rows {
			tag, err := r.tx.Exec(ctx, "UPDATE policy_generation SET generation = $2 WHERE id = $1", row...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return errors.New("no policy_generation row to update")
			}
		}
		return nil
	case loadNot:
		if s, ok := rows[0][len(rows[0])-1].(string); ok {
			r.backupPrune = s
		}
		return nil
	}
	return fmt.Errorf("table %s: no way to load it", t.Name)
}

// Note says what the restore did not bring back: the audit settings are
// the target's owner's.
func (r *Restoring) Note() string {
	if r.backupPrune == "" || r.backupPrune == r.pruneAge {
		return ""
	}
	return fmt.Sprintf("the audit settings were not restored: the backup's min_prune_age was %s, this database's is %s (the owner's to set)", r.backupPrune, r.pruneAge)
}

// Commit writes the restore's audit record and commits. An answer lost
// during the commit is fault.Unknown.
func (r *Restoring) Commit(ctx context.Context) error {
	if err := writeRecord(ctx, r.tx, r.rec); err != nil {
		r.Rollback(ctx)
		r.rec.Aborted()
		return dbError(ctx, "restore: audit record", err)
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err := r.tx.Commit(commitCtx)
	var pgErr *pgconn.PgError
	refused := errors.Is(err, pgx.ErrTxCommitRollback) || errors.As(err, &pgErr) && commitRefused(pgErr)
	if refused {
		r.rec.Aborted()
	} else {
		r.rec.Done(err == nil)
	}
	switch {
	case err == nil:
		return nil
	case refused:
		return dbError(ctx, "restore: commit", err)
	}
	return fault.Wrap(fault.Unknown, err, "the database connection broke while committing the restore: it may or may not have been applied (spike operator status tells)")
}

// Rollback abandons the restore: the database stays as it was.
func (r *Restoring) Rollback(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = r.tx.Rollback(rctx)
}
