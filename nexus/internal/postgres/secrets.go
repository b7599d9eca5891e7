package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// MaxList is the most paths ListSecrets returns.
const MaxList = 10000

// Version is one stored version of a secret.
type Version struct {
	Path    string
	Version int64
	// DEKID names the data key that sealed the value.
	DEKID []byte
	// Sealed is the value sealed under the data key, bound to Path and
	// Version.
	Sealed []byte
	// CreatedBy is the SPIFFE ID of the writer.
	CreatedBy string
	// CreatedAt is set by the database.
	CreatedAt time.Time
	// DeletedAt is set when the version was soft-deleted.
	DeletedAt *time.Time
}

// PutSecret stores a new version of the secret at path, in one transaction:
// it takes the next version number under the secret's row lock, asks seal
// for the sealed value of that version (seal must be quick and do no I/O: the
// row stays locked while it runs), and inserts the version. Concurrent puts
// to one path each get their own version. Errors from seal are returned as
// they are.
func (s *Store) PutSecret(ctx context.Context, path, createdBy string, dekID []byte,
	seal func(version int64) ([]byte, error),
) (Version, error) {
	v := Version{Path: path, DEKID: dekID, CreatedBy: createdBy}
	var sealErr error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO secrets (path, current_version, created_at, updated_at)
			 VALUES ($1, 1, now(), now())
			 ON CONFLICT (path) DO UPDATE
			 SET current_version = secrets.current_version + 1, updated_at = now()
			 RETURNING current_version`,
			path).Scan(&v.Version)
		if err != nil {
			return err
		}
		v.Sealed, sealErr = seal(v.Version)
		if sealErr != nil {
			return sealErr
		}
		return tx.QueryRow(ctx,
			`INSERT INTO secret_versions (path, version, dek_id, sealed, created_by)
			 VALUES ($1, $2, $3, $4, $5)
			 RETURNING created_at`,
			path, v.Version, dekID, v.Sealed, createdBy).Scan(&v.CreatedAt)
	})
	if sealErr != nil {
		return Version{}, sealErr
	}
	if err != nil {
		return Version{}, dbError(ctx, "put secret "+path, err)
	}
	return v, nil
}

// SecretVersion returns one version of the secret at path; version 0 means
// the current one. A missing secret, a missing version and a deleted version
// are fault.NotFound errors.
func (s *Store) SecretVersion(ctx context.Context, path string, version int64) (Version, error) {
	if version < 0 {
		return Version{}, fault.New(fault.Invalid, "version: must not be negative, got %d", version)
	}
	var (
		current   int64
		found     *int64
		dekID     []byte
		sealed    []byte
		createdBy *string
		createdAt *time.Time
		deletedAt *time.Time
	)
	err := s.pool.QueryRow(ctx,
		`SELECT s.current_version, v.version, v.dek_id, v.sealed, v.created_by, v.created_at, v.deleted_at
		 FROM secrets s
		 LEFT JOIN secret_versions v
		   ON v.path = s.path
		  AND v.version = CASE WHEN $2::bigint = 0 THEN s.current_version ELSE $2::bigint END
		 WHERE s.path = $1`,
		path, version,
	).Scan(&current, &found, &dekID, &sealed, &createdBy, &createdAt, &deletedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Version{}, fault.New(fault.NotFound, "secret %s not found", path)
	}
	if err != nil {
		return Version{}, dbError(ctx, "read secret "+path, err)
	}
	if version == 0 {
		version = current
	}
	if found == nil {
		return Version{}, fault.New(fault.NotFound, "version %d of %s not found", version, path)
	}
	if deletedAt != nil {
		return Version{}, fault.New(fault.NotFound, "version %d of %s was deleted", version, path)
	}
	return Version{
		Path:      path,
		Version:   *found,
		DEKID:     dekID,
		Sealed:    sealed,
		CreatedBy: *createdBy,
		CreatedAt: *createdAt,
	}, nil
}

// ListSecrets returns, sorted bytewise, the paths that start with prefix and
// have at least one version that is not deleted; at most MaxList of them.
// The prefix matches bytes exactly: no character in it is a wildcard.
func (s *Store) ListSecrets(ctx context.Context, prefix string) ([]string, error) {
	// The range on path lets the primary key index find the prefix; the
	// starts_with makes the match exact whatever the bound.
	query := `SELECT s.path FROM secrets s
		WHERE s.path >= $1 AND starts_with(s.path, $1)
		  AND EXISTS (SELECT 1 FROM secret_versions v WHERE v.path = s.path AND v.deleted_at IS NULL)
		ORDER BY s.path
		LIMIT $2`
	args := []any{prefix, MaxList}
	if upper, ok := prefixEnd(prefix); ok {
		query = `SELECT s.path FROM secrets s
		WHERE s.path >= $1 AND s.path < $3 AND starts_with(s.path, $1)
		  AND EXISTS (SELECT 1 FROM secret_versions v WHERE v.path = s.path AND v.deleted_at IS NULL)
		ORDER BY s.path
		LIMIT $2`
		args = append(args, upper)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(ctx, "list secrets", err)
	}
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, dbError(ctx, "list secrets", err)
	}
	return paths, nil
}

// prefixEnd returns the smallest string greater than every string starting
// with prefix, when prefix ends in an ASCII byte below 0x7f (always so for a
// valid prefix), so the result is still valid UTF-8.
func prefixEnd(prefix string) (string, bool) {
	if prefix == "" || prefix[len(prefix)-1] >= 0x7f {
		return "", false
	}
	b := []byte(prefix)
	b[len(b)-1]++
	return string(b), true
}

// DeleteSecretVersions soft-deletes versions of the secret at path (the
// current version when versions is empty) and returns, sorted and without
// duplicates, the versions that are now deleted, including any that already
// were. A missing secret is a fault.NotFound error; a version that does not
// exist is a fault.Invalid error and nothing is deleted.
func (s *Store) DeleteSecretVersions(ctx context.Context, path string, versions []int64) ([]int64, error) {
	var deleted []int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var current int64
		err := tx.QueryRow(ctx, "SELECT current_version FROM secrets WHERE path = $1", path).Scan(&current)
		if errors.Is(err, pgx.ErrNoRows) {
			return fault.New(fault.NotFound, "secret %s not found", path)
		}
		if err != nil {
			return err
		}
		want := slices.Clone(versions)
		if len(want) == 0 {
			want = []int64{current}
		}
		slices.Sort(want)
		want = slices.Compact(want)

		rows, err := tx.Query(ctx,
			"SELECT version FROM secret_versions WHERE path = $1 AND version = ANY($2) ORDER BY version",
			path, want)
		if err != nil {
			return err
		}
		existing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for _, v := range want {
			if _, ok := slices.BinarySearch(existing, v); !ok {
				return fault.New(fault.Invalid, "version %d of %s does not exist", v, path)
			}
		}
		_, err = tx.Exec(ctx,
			`UPDATE secret_versions SET deleted_at = now()
			 WHERE path = $1 AND version = ANY($2) AND deleted_at IS NULL`,
			path, want)
		if err != nil {
			return err
		}
		deleted = want
		return nil
	})
	if err != nil {
		return nil, dbError(ctx, fmt.Sprintf("delete versions of %s", path), err)
	}
	return deleted, nil
}
