package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/token"
)

// resealCandidates selects the secrets after $2 without a sealed head yet,
// or whose head or a retained version names another data key than $1. A
// sealed value's data key id is its bytes 2 to 17 (envelope's layout).
const resealCandidates = `FROM secrets s WHERE s.path > $2 AND (
	    s.head IS NULL OR substring(s.head FROM 2 FOR 16) <> $1
	    OR EXISTS (SELECT 1 FROM secret_versions v WHERE v.path = s.path AND v.sealed IS NOT NULL AND v.dek_id <> $1))`

// SecretsToReseal returns up to limit paths, in order after after, of
// secrets that name another data key than active, and, when count is set,
// how many such secrets follow after in all (a scan of every secret: ask
// once, not per batch); -1 otherwise.
func (s *Store) SecretsToReseal(ctx context.Context, active []byte, after string, limit int, count bool) ([]string, int64, error) {
	total := int64(-1)
	if count {
		if err := s.pool.QueryRow(ctx, `SELECT count(*) `+resealCandidates, active, after).Scan(&total); err != nil {
			return nil, 0, dbError(ctx, "count secrets to reseal", err)
		}
		if total == 0 {
			return nil, 0, nil
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT s.path `+resealCandidates+` ORDER BY s.path LIMIT $3`, active, after, limit)
	if err != nil {
		return nil, 0, dbError(ctx, "list secrets to reseal", err)
	}
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return paths, total, dbError(ctx, "list secrets to reseal", err)
}

// RetireAfter is how old a data key must be before RetireDataKeys deletes
// it: longer than any Nexus seals with one (an hour), with a margin for
// clocks and for a write that fetched it just before.
const RetireAfter = time.Hour + 10*time.Minute

// RetireDataKeys deletes the data keys that nothing stored names (no
// secret head, version, legacy custom metadata, policy, policy manifest,
// admin token or audit record), that are not the audit MAC key and that
// were created more than RetireAfter ago, in one transaction with rec, (active, the data key in use, is
// never older), and returns how many it deleted
// and kept. A deleted key is gone for good: anything still sealed under
// it, in a backup for instance, no longer opens.
func (s *Store) RetireDataKeys(ctx context.Context, rec *audit.Entry, active []byte) (retired, kept int64, err error) {
	err = s.mutate(ctx, rec, func(tx pgx.Tx) error {
		// A destroyed version has no value, so the data key its row names
		// means nothing; it names the one in use from now on, so that it
		// holds no older key back.
		if _, err := tx.Exec(ctx, `UPDATE secret_versions SET dek_id = $1 WHERE sealed IS NULL AND dek_id <> $1`, active); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM data_keys d
			WHERE d.created_at < now() - make_interval(secs => $1)
			  AND NOT EXISTS (SELECT 1 FROM audit_keys a WHERE a.dek_id = d.id)
			  AND NOT EXISTS (SELECT 1 FROM secret_versions v WHERE v.dek_id = d.id)
			  AND NOT EXISTS (SELECT 1 FROM secrets x WHERE substring(x.head FROM 2 FOR 16) = d.id
			                     OR substring(x.custom_metadata FROM 2 FOR 16) = d.id)
			  AND NOT EXISTS (SELECT 1 FROM policies p WHERE substring(p.sealed FROM 2 FOR 16) = d.id)
			  AND NOT EXISTS (SELECT 1 FROM policy_manifest m WHERE substring(m.sealed FROM 2 FOR 16) = d.id)
			  AND NOT EXISTS (SELECT 1 FROM admin_tokens t WHERE substring(t.sealed FROM 2 FOR 16) = d.id)`,
			RetireAfter.Seconds())
		if err != nil {
			return err
		}
		retired = tag.RowsAffected()
		return tx.QueryRow(ctx, `SELECT count(*) FROM data_keys`).Scan(&kept)
	})
	return retired, kept, dbError(ctx, "retire data keys", err)
}

// TokensNotSealedUnder returns the admin tokens whose details are sealed
// under another data key than active.
func (s *Store) TokensNotSealedUnder(ctx context.Context, active []byte) ([]token.Record, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT lookup, sealed, expires_at, revoked_at FROM admin_tokens WHERE substring(sealed FROM 2 FOR 16) <> $1`, active)
	if err != nil {
		return nil, dbError(ctx, "list admin tokens to reseal", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (token.Record, error) {
		var t token.Record
		err := r.Scan(&t.Lookup, &t.Sealed, &t.ExpiresAt, &t.RevokedAt)
		return t, err
	})
	return out, dbError(ctx, "list admin tokens to reseal", err)
}

// ResealToken replaces a token's sealed details old with sealed, unless
// they changed meanwhile (a revocation): then it does nothing.
func (s *Store) ResealToken(ctx context.Context, lookup, old, sealed []byte) error {
	_, err := s.pool.Exec(ctx, `UPDATE admin_tokens SET sealed = $3 WHERE lookup = $1 AND sealed = $2`, lookup, old, sealed)
	return dbError(ctx, "reseal admin token", err)
}
