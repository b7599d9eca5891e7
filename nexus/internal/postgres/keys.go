package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
)

// Keyring returns the stored root keyring. Before initialisation it is a
// fault.FailedPrecondition error.
func (s *Store) Keyring(ctx context.Context) (keeper.Keyring, error) {
	var k keeper.Keyring
	var epoch int64
	err := s.pool.QueryRow(ctx,
		"SELECT keyring_id, kdf_params, ciphertext, sealed, epoch, created_at FROM root_keyrings WHERE id = 1",
	).Scan(&k.ID, &k.KDFParams, &k.Ciphertext, &k.Sealed, &epoch, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return keeper.Keyring{}, fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")
	}
	if err != nil {
		return keeper.Keyring{}, dbError(ctx, "read root keyring", err)
	}
	k.Epoch = uint64(epoch)
	if len(k.KDFParams) == 0 {
		k.KDFParams = nil
	}
	if len(k.Ciphertext) == 0 {
		k.Ciphertext = nil
	}
	return k, nil
}

// CreateKeyring stores the root keyring, which initialises SPIKE. Only the
// first call succeeds; later ones, even concurrent ones, are a
// fault.FailedPrecondition error. k.CreatedAt is ignored.
func (s *Store) CreateKeyring(ctx context.Context, rec *audit.Entry, k keeper.Keyring) error {
	epoch, err := storedEpoch(k)
	if err != nil {
		return err
	}
	err = s.mutate(ctx, rec, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO root_keyrings (id, keyring_id, kdf_params, ciphertext, sealed, epoch)
			 VALUES (1, $1, coalesce($2, ''::bytea), coalesce($3, ''::bytea), $4, $5)
			 ON CONFLICT (id) DO NOTHING`,
			k.ID, k.KDFParams, k.Ciphertext, k.Sealed, epoch)
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

// errKeyringChanged refuses a rekey whose keyring was replaced since it
// was read.
var errKeyringChanged = fault.New(fault.Aborted, "the stored keyring changed meanwhile (another rekey?): read it again and retry")

// UpdateKeyring replaces the stored keyring old, as read, with next (a
// rekey), in one transaction with rec. It is a compare-and-set: when the
// stored keyring is no longer old, byte for byte, nothing is written and
// the error is fault.Aborted, so a concurrent rekey is never overwritten.
// next must be format 2 of the same keyring; the format 1 columns are
// emptied, so no copy that the old password opens stays in the row. Every
// admin token is deleted with it: tokens won with the old credentials do
// not outlive them.
func (s *Store) UpdateKeyring(ctx context.Context, rec *audit.Entry, old, next keeper.Keyring) error {
	if len(next.Sealed) == 0 || !bytes.Equal(old.ID, next.ID) {
		return fmt.Errorf("update root keyring: the new keyring must be format 2 of keyring %x", old.ID)
	}
	oldEpoch, err := storedEpoch(old)
	if err != nil {
		return err
	}
	nextEpoch, err := storedEpoch(next)
	if err != nil {
		return err
	}
	err = s.mutate(ctx, rec, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE root_keyrings SET kdf_params = '', ciphertext = '', sealed = $1, epoch = $2
			 WHERE id = 1 AND keyring_id = $3 AND epoch = $4
			   AND kdf_params = coalesce($5, ''::bytea) AND ciphertext = coalesce($6, ''::bytea)
			   AND sealed IS NOT DISTINCT FROM $7`,
			next.Sealed, nextEpoch, old.ID, oldEpoch, old.KDFParams, old.Ciphertext, old.Sealed)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errKeyringChanged
		}
		// Credentials changed: every admin token goes with the old ones
		// (a token not found is refused).
		_, err = tx.Exec(ctx, `DELETE FROM admin_tokens`)
		return err
	})
	return dbError(ctx, "update root keyring", err)
}

// storedEpoch is k's epoch as the database stores it.
func storedEpoch(k keeper.Keyring) (int64, error) {
	if k.Epoch > math.MaxInt64 {
		return 0, fmt.Errorf("store root keyring: epoch %d out of range", k.Epoch)
	}
	return int64(k.Epoch), nil
}

// Initialized reports whether a root keyring is stored.
func (s *Store) Initialized(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM root_keyrings)").Scan(&ok)
	return ok, dbError(ctx, "check initialisation", err)
}

// CreateDataKey stores a wrapped data key. k.CreatedAt is ignored.
func (s *Store) CreateDataKey(ctx context.Context, k envelope.WrappedKey) error {
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
func (s *Store) DataKey(ctx context.Context, id []byte) (envelope.WrappedKey, error) {
	var k envelope.WrappedKey
	var rootVersion int32
	err := s.pool.QueryRow(ctx,
		"SELECT id, root_key_version, wrapped, created_at FROM data_keys WHERE id = $1", id,
	).Scan(&k.ID, &rootVersion, &k.Wrapped, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return envelope.WrappedKey{}, fault.New(fault.DataLoss, "data key %x is missing", id)
	}
	if err != nil {
		return envelope.WrappedKey{}, dbError(ctx, fmt.Sprintf("read data key %x", id), err)
	}
	k.RootKeyVersion = uint32(rootVersion)
	return k, nil
}
