package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// PutSecret stores a new version in one transaction: it locks the secret's
// row (creating it if needed), checks the check-and-set condition, takes the
// next version number, seals, inserts the version and deletes the versions
// that fall out of the retention window. Concurrent puts to one path, from
// any number of Nexus processes, each get their own version; none is lost.
// Errors from Seal are returned as they are.
func (s *Store) PutSecret(ctx context.Context, rec *audit.Entry, p secret.Put) (secret.Version, error) {
	v := secret.Version{Path: p.Path, DEKID: p.DEKID, CreatedBy: p.CreatedBy}
	var sealErr error
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx, p.Path, true)
		if err != nil {
			return err
		}
		if err := checkCAS(p.Path, h, p.CAS); err != nil {
			return err
		}
		v.Version = h.current + 1
		oldest := s.oldestKept(h, v.Version)
		v.Sealed, sealErr = p.Seal(v.Version)
		if sealErr != nil {
			return sealErr
		}
		// One round trip: insert the version, prune, move the head.
		return tx.QueryRow(ctx,
			`WITH ins AS (
			   INSERT INTO secret_versions (path, version, dek_id, sealed, created_by)
			   VALUES ($1, $2, $3, $4, $5)
			   RETURNING created_at
			 ), pruned AS (
			   DELETE FROM secret_versions WHERE path = $1 AND version < $6
			 ), head AS (
			   UPDATE secrets SET current_version = $2, oldest_version = $6, updated_at = now()
			   WHERE path = $1
			 )
			 SELECT created_at FROM ins`,
			p.Path, v.Version, p.DEKID, v.Sealed, p.CreatedBy, oldest).Scan(&v.CreatedAt)
	})
	if sealErr != nil {
		return secret.Version{}, sealErr
	}
	if err != nil {
		return secret.Version{}, dbError(ctx, "put secret "+p.Path, err)
	}
	return v, nil
}

// head is a secret's row, without its custom metadata.
type head struct {
	current, oldest int64
	maxVersions     int32
	casRequired     bool
}

// lockHead locks the secret's row for the rest of the transaction. With
// create, a missing secret is created without versions (and disappears
// again if the transaction rolls back); without, it is a fault.NotFound.
func lockHead(ctx context.Context, tx pgx.Tx, path string, create bool) (head, error) {
	var h head
	var err error
	if create {
		err = tx.QueryRow(ctx,
			`INSERT INTO secrets AS s (path, current_version, oldest_version)
			 VALUES ($1, 0, 0)
			 ON CONFLICT (path) DO UPDATE SET updated_at = s.updated_at
			 RETURNING s.current_version, s.oldest_version, s.max_versions, s.cas_required`,
			path).Scan(&h.current, &h.oldest, &h.maxVersions, &h.casRequired)
	} else {
		err = tx.QueryRow(ctx,
			`SELECT current_version, oldest_version, max_versions, cas_required
			 FROM secrets WHERE path = $1 FOR UPDATE`,
			path).Scan(&h.current, &h.oldest, &h.maxVersions, &h.casRequired)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return head{}, errNotFound(path)
	}
	return h, err
}

func checkCAS(path string, h head, cas *int64) error {
	switch {
	case cas == nil && h.casRequired:
		return fault.Wrap(fault.FailedPrecondition, secret.ErrCASConflict,
			"check-and-set is required for %s: give the version you expect (it is at version %d)", path, h.current)
	case cas == nil:
		return nil
	case *cas != h.current && h.current == 0:
		return fault.Wrap(fault.FailedPrecondition, secret.ErrCASConflict,
			"check-and-set failed: %s has no version yet, you expected %d", path, *cas)
	case *cas != h.current:
		return fault.Wrap(fault.FailedPrecondition, secret.ErrCASConflict,
			"check-and-set failed: %s is at version %d, you expected %d", path, h.current, *cas)
	}
	return nil
}

// maxVersions is the retention that applies to a secret.
func (s *Store) maxVersions(configured int32) int32 {
	if configured > 0 {
		return configured
	}
	return s.defaultMaxVersions
}

// oldestKept is the oldest version to keep once current is the newest.
func (s *Store) oldestKept(h head, current int64) int64 {
	oldest := max(h.oldest, 1, current-int64(s.maxVersions(h.maxVersions))+1)
	return min(oldest, current)
}

func errNotFound(path string) error {
	return fault.New(fault.NotFound, "secret %s not found", path)
}

// SecretVersion returns a live version of the secret at path; version 0
// means the current one. A missing secret or version, and a deleted or
// destroyed version, are fault.NotFound errors saying which.
func (s *Store) SecretVersion(ctx context.Context, path string, version int64) (secret.Read, error) {
	if version < 0 {
		return secret.Read{}, fault.New(fault.Invalid, "version: must not be negative, got %d", version)
	}
	var (
		r         secret.Read
		found     *int64
		oldest    int64
		createdBy *string
		createdAt *time.Time
	)
	err := s.pool.QueryRow(ctx,
		`SELECT s.current_version, s.oldest_version, s.cas_required,
		        v.version, v.dek_id, v.sealed, v.created_by, v.created_at, v.deleted_at, v.destroyed_at
		 FROM secrets s
		 LEFT JOIN secret_versions v
		   ON v.path = s.path
		  AND v.version = CASE WHEN $2::bigint = 0 THEN s.current_version ELSE $2::bigint END
		 WHERE s.path = $1`,
		path, version,
	).Scan(&r.Current, &oldest, &r.CASRequired,
		&found, &r.DEKID, &r.Sealed, &createdBy, &createdAt, &r.DeletedAt, &r.DestroyedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return secret.Read{}, errNotFound(path)
	}
	if err != nil {
		return secret.Read{}, dbError(ctx, "read secret "+path, err)
	}
	if version == 0 {
		version = r.Current
	}
	switch {
	case r.Current == 0:
		return secret.Read{}, fault.New(fault.NotFound, "secret %s has no versions", path)
	case found == nil && version > r.Current:
		return secret.Read{}, fault.New(fault.NotFound, "version %d of %s does not exist: the newest is %d", version, path, r.Current)
	case found == nil:
		return secret.Read{}, fault.New(fault.NotFound, "version %d of %s no longer exists: the oldest kept is %d", version, path, oldest)
	case r.DestroyedAt != nil:
		return secret.Read{}, fault.New(fault.NotFound, "version %d of %s was destroyed", version, path)
	case r.DeletedAt != nil:
		return secret.Read{}, fault.New(fault.NotFound, "version %d of %s was deleted", version, path)
	}
	r.Path, r.Version.Version, r.CreatedBy, r.CreatedAt = path, *found, *createdBy, *createdAt
	return r, nil
}

// ChangeVersions deletes, undeletes or destroys versions of the secret at
// path (the current version when versions is empty), in one transaction,
// and returns the versions named, sorted and without duplicates. A missing
// secret is fault.NotFound; a version that does not exist (never written or
// no longer kept) is fault.Invalid, and undeleting a destroyed version is
// fault.FailedPrecondition; in both cases nothing changes.
func (s *Store) ChangeVersions(ctx context.Context, rec *audit.Entry, path string, versions []int64, change secret.VersionChange) ([]int64, error) {
	var changed []int64
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		h, err := lockHead(ctx, tx, path, false)
		if err != nil {
			return err
		}
		want, err := versionSet(path, h, versions)
		if err != nil {
			return err
		}
		if change == secret.Undelete {
			var destroyed *int64
			err := tx.QueryRow(ctx,
				`SELECT min(version) FROM secret_versions
				 WHERE path = $1 AND version = ANY($2) AND destroyed_at IS NOT NULL`,
				path, want).Scan(&destroyed)
			if err != nil {
				return err
			}
			if destroyed != nil {
				return fault.New(fault.FailedPrecondition, "version %d of %s was destroyed: it cannot be restored", *destroyed, path)
			}
		}
		var sql string
		switch change {
		case secret.Delete:
			sql = `UPDATE secret_versions SET deleted_at = now()
			       WHERE path = $1 AND version = ANY($2) AND deleted_at IS NULL`
		case secret.Undelete:
			sql = `UPDATE secret_versions SET deleted_at = NULL
			       WHERE path = $1 AND version = ANY($2)`
		case secret.Destroy:
			sql = `UPDATE secret_versions SET sealed = NULL, destroyed_at = now()
			       WHERE path = $1 AND version = ANY($2) AND destroyed_at IS NULL`
		default:
			return fmt.Errorf("unknown version change %d", change)
		}
		if _, err := tx.Exec(ctx, sql, path, want); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE secrets SET updated_at = now() WHERE path = $1`, path); err != nil {
			return err
		}
		changed = want
		return nil
	})
	if err != nil {
		return nil, dbError(ctx, "change versions of "+path, err)
	}
	return changed, nil
}

// versionSet validates the versions a caller named against the secret's
// retained range and returns them sorted without duplicates; none means the
// current version.
func versionSet(path string, h head, versions []int64) ([]int64, error) {
	if len(versions) == 0 {
		if h.current == 0 {
			return nil, fault.New(fault.NotFound, "secret %s has no versions", path)
		}
		return []int64{h.current}, nil
	}
	seen := make(map[int64]bool, len(versions))
	out := make([]int64, 0, len(versions))
	for _, v := range versions {
		if v < max(h.oldest, 1) || v > h.current {
			return nil, fault.New(fault.Invalid, "versions: version %d of %s does not exist (kept: %s)", v, path, keptRange(h))
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

func keptRange(h head) string {
	if h.current == 0 {
		return "none"
	}
	return fmt.Sprintf("%d to %d", max(h.oldest, 1), h.current)
}
