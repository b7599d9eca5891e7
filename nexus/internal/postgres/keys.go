package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Keyring is the root keyring as stored: sealed by Keeper under a key derived
// from the admin password. Nexus cannot open it.
type Keyring struct {
	// ID identifies the keyring; Keeper refuses to unseal a different one
	// while holding this one.
	ID []byte
	// KDFParams are the Argon2id salt and parameters that derive the
	// key-encryption key from the password.
	KDFParams []byte
	// Ciphertext is the sealed keyring.
	Ciphertext []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// Keyring returns the stored root keyring. Before initialisation it is a
// fault.FailedPrecondition error.
func (s *Store) Keyring(ctx context.Context) (Keyring, error) {
	var k Keyring
	err := s.pool.QueryRow(ctx,
		"SELECT keyring_id, kdf_params, ciphertext, created_at FROM root_keyrings WHERE id = 1",
	).Scan(&k.ID, &k.KDFParams, &k.Ciphertext, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Keyring{}, fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")
	}
	if err != nil {
		return Keyring{}, dbError(ctx, "read root keyring", err)
	}
	return k, nil
}

// CreateKeyring stores the root keyring, which initialises SPIKE. Only the
// first call succeeds; later ones, even concurrent ones, are a
// fault.FailedPrecondition error. k.CreatedAt is ignored.
func (s *Store) CreateKeyring(ctx context.Context, k Keyring) error {
	err := s.inAuditedTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO root_keyrings (id, keyring_id, kdf_params, ciphertext)
			 VALUES (1, $1, $2, $3)
			 ON CONFLICT (id) DO NOTHING`,
			k.ID, k.KDFParams, k.Ciphertext)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fault.New(fault.FailedPrecondition, "SPIKE is already initialised")
		}
		return nil
	})
	return dbError(ctx, "store root keyring", err)
}

// Initialized reports whether a root keyring is stored.
func (s *Store) Initialized(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM root_keyrings)").Scan(&ok)
	return ok, dbError(ctx, "check initialisation", err)
}

// DataKey is a data encryption key wrapped by Keeper under one version of
// the root key.
type DataKey struct {
	// ID is 16 random bytes; sealed values name the key that sealed them.
	ID []byte
	// RootKeyVersion is the root key version that wrapped the key.
	RootKeyVersion uint32
	// Wrapped is the key sealed under that root key version.
	Wrapped []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// CreateDataKey stores a wrapped data key. k.CreatedAt is ignored.
func (s *Store) CreateDataKey(ctx context.Context, k DataKey) error {
	if k.RootKeyVersion > math.MaxInt32 {
		return fmt.Errorf("store data key: root key version %d out of range", k.RootKeyVersion)
	}
	_, err := s.pool.Exec(ctx,
		"INSERT INTO data_keys (id, root_key_version, wrapped) VALUES ($1, $2, $3)",
		k.ID, int32(k.RootKeyVersion), k.Wrapped)
	return dbError(ctx, "store data key", err)
}

// DataKey returns the wrapped data key with the given id. Stored values
// reference their data key, so a missing one is a fault.DataLoss error.
func (s *Store) DataKey(ctx context.Context, id []byte) (DataKey, error) {
	var k DataKey
	var rootVersion int32
	err := s.pool.QueryRow(ctx,
		"SELECT id, root_key_version, wrapped, created_at FROM data_keys WHERE id = $1", id,
	).Scan(&k.ID, &rootVersion, &k.Wrapped, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return DataKey{}, fault.New(fault.DataLoss, "data key %x is missing", id)
	}
	if err != nil {
		return DataKey{}, dbError(ctx, fmt.Sprintf("read data key %x", id), err)
	}
	k.RootKeyVersion = uint32(rootVersion)
	return k, nil
}
