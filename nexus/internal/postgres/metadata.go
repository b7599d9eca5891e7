package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Metadata returns the metadata of the secret at path.
func (s *Store) Metadata(ctx context.Context, path string) (secret.Metadata, error) {
	var m secret.Metadata
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		m, err = s.readMetadata(ctx, tx, path)
		return err
	})
	if err != nil {
		return secret.Metadata{}, dbError(ctx, "read metadata of "+path, err)
	}
	return m, nil
}

// readMetadata reads the secret and its versions in tx, so both come from
// one snapshot.
func (s *Store) readMetadata(ctx context.Context, tx pgx.Tx, path string) (secret.Metadata, error) {
	m := secret.Metadata{Path: path}
	err := tx.QueryRow(ctx,
		`SELECT current_version, oldest_version, max_versions, cas_required, custom_metadata, created_at, updated_at
		 FROM secrets WHERE path = $1`,
		path).Scan(&m.CurrentVersion, &m.OldestVersion, &m.MaxVersions, &m.CASRequired,
		&m.CustomMetadata, &m.CreatedAt, &m.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return secret.Metadata{}, errNotFound(path)
	}
	if err != nil {
		return secret.Metadata{}, err
	}
	m.EffectiveMaxVersions = s.maxVersions(m.MaxVersions)
	rows, err := tx.Query(ctx,
		`SELECT version, created_by, created_at, deleted_at, destroyed_at
		 FROM secret_versions WHERE path = $1 ORDER BY version`,
		path)
	if err != nil {
		return secret.Metadata{}, err
	}
	m.Versions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (secret.Version, error) {
		v := secret.Version{Path: path}
		err := row.Scan(&v.Version, &v.CreatedBy, &v.CreatedAt, &v.DeletedAt, &v.DestroyedAt)
		return v, err
	})
	return m, err
}

// UpdateMetadata applies u, creating the secret without versions if it does
// not exist, and returns the result.
func (s *Store) UpdateMetadata(ctx context.Context, rec *audit.Entry, u secret.MetadataUpdate) (secret.Metadata, error) {
	if u.MaxVersions != nil {
		if err := secret.ValidateMaxVersions(*u.MaxVersions); err != nil {
			return secret.Metadata{}, err
		}
	}
	var m secret.Metadata
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx, u.Path, true)
		if err != nil {
			return err
		}
		if u.MaxVersions != nil {
			h.maxVersions = *u.MaxVersions
		}
		oldest := h.oldest
		if h.current > 0 {
			oldest = s.oldestKept(h, h.current)
		}
		_, err = tx.Exec(ctx,
			`WITH pruned AS (
			   DELETE FROM secret_versions WHERE path = $1 AND version < $2
			 )
			 UPDATE secrets SET
			   max_versions = $3,
			   oldest_version = $2,
			   cas_required = COALESCE($4, cas_required),
			   custom_metadata = CASE WHEN $5 THEN $6 ELSE custom_metadata END,
			   updated_at = now()
			 WHERE path = $1`,
			u.Path, oldest, h.maxVersions, u.CASRequired, u.SetCustomMetadata, u.CustomMetadata)
		if err != nil {
			return err
		}
		m, err = s.readMetadata(ctx, tx, u.Path)
		return err
	})
	if err != nil {
		return secret.Metadata{}, dbError(ctx, "update metadata of "+u.Path, err)
	}
	return m, nil
}

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
