package envelope

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// Limits on the use of one data key. GCM with random nonces is safe for
// 2^32 messages per key; we rotate far below that, and by age so that a
// stolen DEK opens only a bounded window of values.
const (
	maxSealsPerKey = 1 << 20
	maxKeyAge      = time.Hour
	// cacheTTL bounds how long an unwrapped data key stays in memory after
	// it was fetched from Keeper.
	cacheTTL = 10 * time.Minute
	// maxCachedKeys bounds the read cache.
	maxCachedKeys = 4096
)

const unsealHint = "unseal with: echo '<password>' | spike operator unseal"

// State is what Nexus knows about Keeper and the root keyring.
type State struct {
	// Initialised is true once the database holds a keyring.
	Initialised bool
	// Unsealed is true when Keeper holds this database's keyring.
	Unsealed bool
	// KeyringID is the id of this database's keyring, when initialised.
	KeyringID []byte
	// KeeperErr says why Keeper could not be reached, if it could not.
	KeeperErr error
	// reason explains a sealed state to callers.
	reason string
}

// Err returns the caller-facing error for a state that cannot serve
// secrets, or nil when it can.
func (s State) Err() error {
	switch {
	case !s.Initialised:
		return fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")
	case !s.Unsealed:
		return fault.New(fault.FailedPrecondition, "SPIKE is sealed: %s; %s", s.reason, unsealHint)
	}
	return nil
}

// Key is a data key ready to seal values.
type Key struct {
	ID   DEKID
	aead cipher.AEAD
}

// Seal encrypts plaintext under k, bound to aad.
func (k Key) Seal(plaintext, aad []byte) ([]byte, error) {
	return Seal(k.aead, k.ID, plaintext, aad)
}

type activeKey struct {
	Key
	uses    int
	created time.Time
}

type cachedKey struct {
	aead    cipher.AEAD
	expires time.Time
}

// Keys manages data keys: it creates them through Keeper, stores them
// wrapped in PostgreSQL, caches them unwrapped for a bounded time, and drops
// them all as soon as Keeper loses its keyring.
type Keys struct {
	keeper keeperv1connect.KeeperServiceClient
	store  *postgres.Store
	log    *slog.Logger
	now    func() time.Time

	createMu sync.Mutex // serialises creation of the active key

	mu     sync.RWMutex
	state  State
	active *activeKey
	cache  map[DEKID]cachedKey
}

// NewKeys returns a key manager. It starts sealed; call Check or Watch.
func NewKeys(keeper keeperv1connect.KeeperServiceClient, store *postgres.Store, log *slog.Logger) *Keys {
	return &Keys{
		keeper: keeper,
		store:  store,
		log:    log,
		now:    time.Now,
		state:  State{reason: "Nexus has not reached Keeper yet"},
		cache:  make(map[DEKID]cachedKey),
	}
}

// State returns the last known state.
func (k *Keys) State() State {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.state
}

// Watch calls Check every interval until ctx is done, so that a Keeper
// restart (which loses the keyring) drops every cached key within one
// interval.
func (k *Keys) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.Check(ctx)
		}
	}
}

// Check asks the database and Keeper for the current state and updates it.
func (k *Keys) Check(ctx context.Context) State {
	next := State{}
	kr, err := k.store.Keyring(ctx)
	switch {
	case fault.CodeOf(err) == fault.FailedPrecondition:
		next.reason = "not initialised"
	case err != nil:
		// The database is unreachable: keep what we knew; requests will
		// fail on the database anyway.
		k.log.Warn("keyring lookup failed", "error", err)
		return k.State()
	default:
		next.Initialised = true
		next.KeyringID = kr.ID
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := k.keeper.Status(cctx, connect.NewRequest(&keeperv1.StatusRequest{}))
	switch {
	case err != nil:
		next.KeeperErr = err
		next.reason = "Keeper is unreachable"
	case !resp.Msg.GetUnsealed():
		next.reason = "Keeper holds no root key (it has restarted or was never unsealed)"
	case next.Initialised && !bytes.Equal(resp.Msg.GetKeyringId(), next.KeyringID):
		next.reason = "Keeper holds another keyring than this database's"
	case next.Initialised:
		next.Unsealed = true
	}
	k.setState(next)
	return next
}

func (k *Keys) setState(next State) {
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.state
	k.state = next
	if !next.Unsealed {
		k.dropLocked()
	}
	if prev.Unsealed != next.Unsealed {
		if next.Unsealed {
			k.log.Info("unsealed", "keyring_id", hex.EncodeToString(next.KeyringID))
		} else {
			k.log.Warn("sealed", "reason", next.reason, "keeper_error", errString(next.KeeperErr))
		}
	}
}

// markSealed records that Keeper answered "sealed" to a key request.
func (k *Keys) markSealed() {
	st := k.State()
	st.Unsealed = false
	st.reason = "Keeper holds no root key (it has restarted)"
	k.setState(st)
}

func (k *Keys) dropLocked() {
	k.active = nil
	clear(k.cache)
}

// ActiveKey returns the data key new values are sealed with, creating and
// storing a new one when there is none or it has been used enough. Each call
// counts as one use.
func (k *Keys) ActiveKey(ctx context.Context) (Key, error) {
	if key, ok, err := k.takeActive(); ok || err != nil {
		return key, err
	}
	k.createMu.Lock()
	defer k.createMu.Unlock()
	if key, ok, err := k.takeActive(); ok || err != nil {
		return key, err
	}

	var id DEKID
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("generate data key id: %w", err)
	}
	resp, err := k.keeper.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: id[:]}))
	if err != nil {
		return Key{}, k.keeperError("generate data key", err)
	}
	plain := resp.Msg.GetPlaintext()
	aead, err := NewAEAD(plain)
	clear(plain)
	if err != nil {
		return Key{}, fmt.Errorf("data key from keeper: %w", err)
	}
	err = k.store.CreateDataKey(ctx, postgres.DataKey{
		ID:             id[:],
		RootKeyVersion: resp.Msg.GetRootKeyVersion(),
		Wrapped:        resp.Msg.GetWrapped(),
	})
	if err != nil {
		return Key{}, fmt.Errorf("store data key: %w", err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.state.Err(); err != nil {
		return Key{}, err
	}
	k.active = &activeKey{Key: Key{ID: id, aead: aead}, uses: 1, created: k.now()}
	k.cacheLocked(id, aead)
	return k.active.Key, nil
}

// takeActive returns the active key if it may be used once more.
func (k *Keys) takeActive() (Key, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.state.Err(); err != nil {
		return Key{}, false, err
	}
	a := k.active
	if a == nil || a.uses >= maxSealsPerKey || k.now().Sub(a.created) >= maxKeyAge {
		return Key{}, false, nil
	}
	a.uses++
	return a.Key, true, nil
}

// Open decrypts a sealed value bound to aad, fetching its data key through
// Keeper when it is not cached. Values that fail authentication are reported
// as fault.DataLoss.
func (k *Keys) Open(ctx context.Context, sealed, aad []byte, what string) ([]byte, error) {
	id, err := KeyID(sealed)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	aead, err := k.key(ctx, id)
	if err != nil {
		return nil, err
	}
	plain, err := Open(aead, sealed, aad)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	return plain, nil
}

func (k *Keys) key(ctx context.Context, id DEKID) (cipher.AEAD, error) {
	k.mu.RLock()
	err := k.state.Err()
	c, ok := k.cache[id]
	k.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if ok && k.now().Before(c.expires) {
		return c.aead, nil
	}

	row, err := k.store.DataKey(ctx, id[:])
	if err != nil {
		return nil, err
	}
	resp, err := k.keeper.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId:          id[:],
		Wrapped:        row.Wrapped,
		RootKeyVersion: row.RootKeyVersion,
	}))
	if err != nil {
		return nil, k.keeperError("unwrap data key "+hex.EncodeToString(id[:]), err)
	}
	plain := resp.Msg.GetPlaintext()
	aead, err := NewAEAD(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("data key from keeper: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.state.Err(); err != nil {
		return nil, err
	}
	k.cacheLocked(id, aead)
	return aead, nil
}

func (k *Keys) cacheLocked(id DEKID, aead cipher.AEAD) {
	if len(k.cache) >= maxCachedKeys {
		now := k.now()
		for cid, c := range k.cache {
			if now.After(c.expires) || len(k.cache) >= maxCachedKeys {
				delete(k.cache, cid)
			}
		}
	}
	k.cache[id] = cachedKey{aead: aead, expires: k.now().Add(cacheTTL)}
}

// keeperError turns a failed Keeper call into a domain error.
func (k *Keys) keeperError(op string, err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeFailedPrecondition:
		k.markSealed()
		return k.State().Err()
	case connect.CodeDataLoss, connect.CodeInvalidArgument:
		return fault.Wrap(fault.DataLoss, err, "%s: the wrapped data key was altered or is corrupt", op)
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return fmt.Errorf("%s: %w", op, err)
	}
	return fault.Wrap(fault.Unavailable, err, "%s: Keeper is unavailable", op)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ErrSealed reports whether err means SPIKE is sealed or not initialised.
func ErrSealed(err error) bool {
	var fe *fault.Error
	return errors.As(err, &fe) && fe.Code == fault.FailedPrecondition
}
