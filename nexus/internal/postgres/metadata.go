package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// DeleteMetadata removes the secret at path and all its versions.
func (s *Store) DeleteMetadata(ctx context.Context, rec *audit.Entry, path string) error {
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		// The change log's row in the same statement, authenticated with
		// the transaction's id.
		var xid string
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
			return err
		}
		x, err := parseXID(xid)
		if err != nil {
			return err
		}
		mac, err := rec.ChangeMAC(x, path, nil, int16(secret.ChangeRemoved), []int64{})
		if err != nil {
			return err
		}
		var n int64
		err = tx.QueryRow(ctx, `WITH gone AS (DELETE FROM secrets WHERE path = $1 RETURNING path),
		  changed AS (INSERT INTO secret_changes (xid, path, kind, mac) SELECT pg_current_xact_id(), path, $2, $3 FROM gone)
		  SELECT count(*) FROM gone`, path, int16(secret.ChangeRemoved), mac).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return errNotFound(path)
		}
		return nil
	})
	return dbError(ctx, "delete secret "+path, err)
}
