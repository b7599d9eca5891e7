package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/token"
)

// PolicyChannel is the NOTIFY channel that announces policy changes.
const PolicyChannel = "spike_policies"

// PutPolicy creates or replaces the policy called name, rewrites the policy
// manifest with manifest, and announces the change to every Nexus replica,
// in one transaction.
func (s *Store) PutPolicy(ctx context.Context, rec *audit.Entry, name string, sealed []byte, manifest policy.ManifestFunc) (policy.Record, error) {
	row, err := changePolicies(ctx, s, rec, manifest, func(tx pgx.Tx) (policy.Record, error) {
		row := policy.Record{Name: name, Sealed: sealed}
		err := tx.QueryRow(ctx,
			`INSERT INTO policies AS p (name, sealed) VALUES ($1, $2)
			 ON CONFLICT (name) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()
			 RETURNING p.created_at, p.updated_at`,
			name, sealed).Scan(&row.CreatedAt, &row.UpdatedAt)
		return row, err
	})
	if err != nil {
		return policy.Record{}, dbError(ctx, "put policy "+name, err)
	}
	return row, nil
}

// DeletePolicy removes the policy called name, rewrites the policy manifest
// with manifest, and announces the change, in one transaction.
func (s *Store) DeletePolicy(ctx context.Context, rec *audit.Entry, name string, manifest policy.ManifestFunc) error {
	_, err := changePolicies(ctx, s, rec, manifest, func(tx pgx.Tx) (struct{}, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM policies WHERE name = $1`, name)
		if err != nil {
			return struct{}{}, err
		}
		if tag.RowsAffected() == 0 {
			return struct{}{}, fault.New(fault.NotFound, "policy %s not found", name)
		}
		return struct{}{}, nil
	})
	return dbError(ctx, "delete policy "+name, err)
}

// changePolicies runs change in an audited transaction that also bumps the
// policy generation, rewrites the manifest and notifies the replicas.
// Policy changes queue on the generation row (the manifest row may not
// exist yet, so it cannot be the only lock).
func changePolicies[T any](ctx context.Context, s *Store, rec *audit.Entry, manifest policy.ManifestFunc, change func(pgx.Tx) (T, error)) (T, error) {
	out, _, err := mutateOutcome(ctx, s, rec, func(tx pgx.Tx) (out T, err error) {
		var gen int64
		err = tx.QueryRow(ctx, `SELECT generation FROM policy_generation WHERE id = 1 FOR UPDATE`).Scan(&gen)
		if err != nil {
			return out, err
		}
		var old []byte
		err = tx.QueryRow(ctx, `SELECT sealed FROM policy_manifest WHERE id = 1 FOR UPDATE`).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return out, err
		}
		if out, err = change(tx); err != nil {
			return out, err
		}
		gen++
		if _, err := tx.Exec(ctx, `UPDATE policy_generation SET generation = $1 WHERE id = 1`, gen); err != nil {
			return out, err
		}
		rows, err := policyRows(ctx, tx)
		if err != nil {
			return out, err
		}
		next, err := manifest(old, rows, gen)
		if err != nil {
			return out, err
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO policy_manifest (id, sealed) VALUES (1, $1)
			 ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()`,
			next); err != nil {
			return out, err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PolicyChannel, strconv.FormatInt(gen, 10))
		return out, err
	})
	return out, err
}

// Policies returns every stored policy, the policy generation and the
// sealed manifest, from one snapshot.
func (s *Store) Policies(ctx context.Context) (policy.Records, error) {
	var snap policy.Records
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT generation FROM policy_generation WHERE id = 1`).Scan(&snap.Generation); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT sealed FROM policy_manifest WHERE id = 1`).Scan(&snap.Manifest)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		snap.Rows, err = policyRows(ctx, tx)
		return err
	})
	if err != nil {
		return policy.Records{}, dbError(ctx, "read policies", err)
	}
	return snap, nil
}

func policyRows(ctx context.Context, tx pgx.Tx) ([]policy.Record, error) {
	r, err := tx.Query(ctx, `SELECT name, sealed, created_at, updated_at FROM policies ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(r, func(row pgx.CollectableRow) (policy.Record, error) {
		var p policy.Record
		err := row.Scan(&p.Name, &p.Sealed, &p.CreatedAt, &p.UpdatedAt)
		return p, err
	})
}

// PolicyGeneration returns the current policy generation.
func (s *Store) PolicyGeneration(ctx context.Context) (int64, error) {
	var gen int64
	err := s.pool.QueryRow(ctx, `SELECT generation FROM policy_generation WHERE id = 1`).Scan(&gen)
	return gen, dbError(ctx, "read policy generation", err)
}

// ListenPolicies calls changed whenever a policy changes, until ctx is
// done. It holds one connection for LISTEN; when the connection breaks it
// reconnects and calls changed again, since notifications may have been
// missed meanwhile. Behind a transaction-mode pooler, which cannot keep a
// session listening, it only waits for ctx: the caller's poll of
// PolicyGeneration alone brings changes.
func (s *Store) ListenPolicies(ctx context.Context, changed func()) {
	if s.pooler != NoPooler {
		<-ctx.Done()
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// A broken LISTEN connection is not reported: the caller also polls
		// PolicyGeneration, so it misses nothing while this reconnects.
		_ = s.listen(ctx, changed)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listen(ctx context.Context, changed func()) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection ends in LISTEN state: take it out of the pool for good.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+PolicyChannel); err != nil {
		return err
	}
	changed()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		changed()
	}
}

// CreateToken stores a new admin token and deletes tokens that expired
// more than a day ago. A retry of a request that created its token is
// fault.FailedPrecondition: the token cannot be shown again.
func (s *Store) CreateToken(ctx context.Context, rec *audit.Entry, t token.Record) error {
	_, replayed, err := mutateOutcome(ctx, s, rec, func(tx pgx.Tx) (struct{}, error) {
		if _, err := tx.Exec(ctx,
			`INSERT INTO admin_tokens (lookup, sealed, expires_at) VALUES ($1, $2, $3)`,
			t.Lookup, t.Sealed, t.ExpiresAt); err != nil {
			return struct{}{}, err
		}
		_, err := tx.Exec(ctx, `DELETE FROM admin_tokens WHERE expires_at < now() - interval '1 day'`)
		return struct{}{}, err
	})
	if err == nil && replayed {
		// The token is shown once and kept only as a hash: it cannot be
		// returned again.
		return fault.New(fault.FailedPrecondition,
			"this request (same Idempotency-Key) already created an admin token, which is shown only once: log in again")
	}
	return dbError(ctx, "store admin token", err)
}

// Token returns the admin token with the given lookup hash.
func (s *Store) Token(ctx context.Context, lookup []byte) (token.Record, error) {
	t := token.Record{Lookup: lookup}
	err := s.pool.QueryRow(ctx,
		`SELECT sealed, expires_at, revoked_at FROM admin_tokens WHERE lookup = $1`, lookup,
	).Scan(&t.Sealed, &t.ExpiresAt, &t.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return token.Record{}, fault.New(fault.NotFound, "admin token not found")
	}
	if err != nil {
		return token.Record{}, dbError(ctx, "read admin token", err)
	}
	return t, nil
}

// RevokeToken marks the token revoked and replaces its sealed details with
// ones that say so.
func (s *Store) RevokeToken(ctx context.Context, rec *audit.Entry, lookup, sealed []byte) error {
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE admin_tokens SET sealed = $2, revoked_at = now() WHERE lookup = $1`, lookup, sealed)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fault.New(fault.NotFound, "admin token not found")
		}
		return nil
	})
	return dbError(ctx, "revoke admin token", err)
}
