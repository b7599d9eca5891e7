package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
)

// DeleteMetadata removes the secret at path and all its versions.
func (s *Store) DeleteMetadata(ctx context.Context, rec *audit.Entry, path string) error {
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM secrets WHERE path = $1`, path)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNotFound(path)
		}
		return nil
	})
	return dbError(ctx, "delete secret "+path, err)
}
