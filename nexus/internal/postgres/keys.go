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
		return keeper.Keyring{}, fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`").Because(fault.NotInitialised)
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
	return s.replaceKeyring(ctx, "update root keyring", rec, old, next, func(tx pgx.Tx) error {
		// Credentials changed: every admin token goes with the old ones
		// (a token not found is refused).
		_, err := tx.Exec(ctx, `DELETE FROM admin_tokens`)
		return err
	})
}

// AdvanceKeyring replaces the stored keyring old with next, a rotation of
// it (same keyring key and slots, a new root key version), in one
// transaction with rec; a compare-and-set like UpdateKeyring. Admin tokens
// stay: the credentials did not change.
func (s *Store) AdvanceKeyring(ctx context.Context, rec *audit.Entry, old, next keeper.Keyring) error {
	return s.replaceKeyring(ctx, "rotate root keyring", rec, old, next, nil)
}

// RetireRootKeys replaces the stored keyring old with next, which lacks
// the root key versions below below, in one transaction with rec, only if
// no data key is wrapped under one of them. The keyring row is locked
// first: a new data key is stored only under a share lock of it (see
// CreateDataKey), so none is being stored meanwhile, and none at the old
// epoch after. The version a row names is a plain column: verify gets
// every row claiming a version not below below and must check, with a
// Keeper, that each really unwraps under it. Otherwise nothing is written
// (not even next) and the error is fault.FailedPrecondition or verify's.
func (s *Store) RetireRootKeys(ctx context.Context, rec *audit.Entry, old, next keeper.Keyring, below uint32,
	verify func(context.Context, []envelope.WrappedKey) error) error {
	return s.replaceKeyringChecked(ctx, "destroy old root keys", rec, old, next, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM root_keyrings WHERE id = 1 FOR UPDATE`); err != nil {
			return err
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM data_keys WHERE root_key_version < $1`, int64(below)).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fault.New(fault.FailedPrecondition, "%d data keys are still wrapped under a root key version below %d: rewrap them first (spike operator rotate does)", n, below)
		}
		rows, err := tx.Query(ctx, `SELECT id, root_key_version, wrapped FROM data_keys`)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, scanWrappedKey)
		if err != nil {
			return err
		}
		return verify(ctx, keys)
	}, nil)
}

// scanWrappedKey reads id, root_key_version, wrapped. A version outside
// uint32 (the column is plain) becomes one no Keeper holds.
func scanWrappedKey(r pgx.CollectableRow) (envelope.WrappedKey, error) {
	var k envelope.WrappedKey
	var v int64
	err := r.Scan(&k.ID, &v, &k.Wrapped)
	if v < 0 || v > math.MaxUint32 {
		v = math.MaxUint32
	}
	k.RootKeyVersion = uint32(v)
	return k, err
}

// replaceKeyring is the compare-and-set of the stored keyring old with
// next, with then run after it in the same transaction.
func (s *Store) replaceKeyring(ctx context.Context, op string, rec *audit.Entry, old, next keeper.Keyring, then func(pgx.Tx) error) error {
	return s.replaceKeyringChecked(ctx, op, rec, old, next, nil, then)
}

// replaceKeyringChecked is replaceKeyring with before run first: an error
// from it writes nothing.
func (s *Store) replaceKeyringChecked(ctx context.Context, op string, rec *audit.Entry, old, next keeper.Keyring, before, then func(pgx.Tx) error) error {
	if len(next.Sealed) == 0 || !bytes.Equal(old.ID, next.ID) {
		return fmt.Errorf("%s: the new keyring must be format 2 of keyring %x", op, old.ID)
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
		if before != nil {
			if err := before(tx); err != nil {
				return err
			}
		}
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
		if then != nil {
			return then(tx)
		}
		return nil
	})
	return dbError(ctx, op, err)
}

// DataKeysBelow returns up to limit wrapped data keys whose root key
// version is below version, and how many there are in all.
func (s *Store) DataKeysBelow(ctx context.Context, version uint32, limit int) ([]envelope.WrappedKey, int64, error) {
	var total int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM data_keys WHERE root_key_version < $1`, int64(version)).Scan(&total); err != nil {
		return nil, 0, dbError(ctx, "count data keys to rewrap", err)
	}
	if total == 0 || limit <= 0 {
		return nil, total, nil
	}
	rows, err := s.pool.Query(ctx,
		`SELECT id, root_key_version, wrapped FROM data_keys WHERE root_key_version < $1 ORDER BY id LIMIT $2`,
		int64(version), limit)
	if err != nil {
		return nil, 0, dbError(ctx, "read data keys to rewrap", err)
	}
	keys, err := pgx.CollectRows(rows, scanWrappedKey)
	return keys, total, dbError(ctx, "read data keys to rewrap", err)
}

// Rewrapped is one data key wrapped anew: Old as read, Wrapped and
// RootKeyVersion its new form.
type Rewrapped struct {
	Old            envelope.WrappedKey
	Wrapped        []byte
	RootKeyVersion uint32
}

// RewrapDataKeys stores the new forms of data keys, each only if its row
// is still as read (compare-and-set), in one transaction with rec, and
// returns how many were stored.
func (s *Store) RewrapDataKeys(ctx context.Context, rec *audit.Entry, keys []Rewrapped) (int64, error) {
	var n int64
	err := s.mutate(ctx, rec, func(tx pgx.Tx) error {
		n = 0
		for _, k := range keys {
			if k.RootKeyVersion > math.MaxInt32 {
				return fmt.Errorf("root key version %d out of range", k.RootKeyVersion)
			}
			tag, err := tx.Exec(ctx,
				`UPDATE data_keys SET wrapped = $1, root_key_version = $2
				 WHERE id = $3 AND root_key_version = $4 AND wrapped = $5`,
				k.Wrapped, int32(k.RootKeyVersion), k.Old.ID, int64(k.Old.RootKeyVersion), k.Old.Wrapped)
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		return nil
	})
	return n, dbError(ctx, "store rewrapped data keys", err)
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

// CreateDataKey stores a wrapped data key, in one statement with a check
// that the stored keyring is not at a newer epoch than the one that
// wrapped it (share-locking the keyring row, so that a destruction of old
// root key versions, which updates that row, runs entirely before or
// after): a Keeper that missed a rotation must not wrap a key under a
// version that is, or is about to be, destroyed (without a keyring row,
// as in tests of the store alone, epoch 0 is assumed). Otherwise nothing is
// stored and the error is fault.Unavailable. k.CreatedAt is ignored.
func (s *Store) CreateDataKey(ctx context.Context, k envelope.WrappedKey) error {
	if k.RootKeyVersion > math.MaxInt32 || k.Epoch > math.MaxInt64 {
		return fmt.Errorf("store data key: root key version %d or epoch %d out of range", k.RootKeyVersion, k.Epoch)
	}
	var stored int64
	var inserted bool
	err := s.pool.QueryRow(ctx,
		`WITH ring AS (SELECT epoch FROM root_keyrings WHERE id = 1 FOR SHARE),
		      ins AS (INSERT INTO data_keys (id, root_key_version, wrapped)
		              SELECT $1, $2, $3 WHERE coalesce((SELECT epoch FROM ring), 0) <= $4 RETURNING 1)
		 SELECT coalesce((SELECT epoch FROM ring), -1), EXISTS (SELECT 1 FROM ins)`,
		k.ID, int32(k.RootKeyVersion), k.Wrapped, int64(k.Epoch)).Scan(&stored, &inserted)
	if err != nil {
		return dbError(ctx, "store data key", err)
	}
	if !inserted {
		return fault.New(fault.Unavailable, "the Keeper wrapped the data key at keyring epoch %d, older than the stored keyring's %d (it missed a rotation): nothing was stored; retry", k.Epoch, stored)
	}
	return nil
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
