package envelope

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
)

// Limits on the use of one data key. GCM with random nonces is safe for
// 2^32 messages per key; we rotate far below that, and by age so that a
// stolen DEK opens only a bounded window of values.
const (
	maxSealsPerKey = 1 << 20
	maxKeyAge      = time.Hour
	// maxCachedKeys bounds the read cache.
	maxCachedKeys = 4096
	// DefaultCacheTTL bounds by default how long an unwrapped data key
	// stays in memory after it was fetched from Keeper.
	DefaultCacheTTL = 10 * time.Minute
	// MinCacheTTL and MaxCacheTTL bound the cache TTL: a write fetches the
	// keys it needs before it locks its row, and must find them there.
	MinCacheTTL = time.Second
	MaxCacheTTL = time.Hour
)

// Key is a data key ready to seal values.
type Key struct {
	ID   DEKID
	aead cipher.AEAD
}

// NewKey returns the data key id with the raw key material raw (which the
// caller may clear afterwards).
func NewKey(id DEKID, raw []byte) (Key, error) {
	aead, err := NewAEAD(raw)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, aead: aead}, nil
}

// Open decrypts a value sealed under k, bound to aad.
func (k Key) Open(sealed, aad []byte) ([]byte, error) {
	return Open(k.aead, sealed, aad)
}

// SealVersion encrypts plaintext under k, a secret version's own key
// (format FormatVersionKey), bound to aad.
func (k Key) SealVersion(plaintext, aad []byte) ([]byte, error) {
	return seal(FormatVersionKey, k.aead, k.ID, plaintext, aad)
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

// WrappedKey is a data key as stored: wrapped by Keeper under one version
// of the root key.
type WrappedKey struct {
	// ID is 16 random bytes; sealed values name the key that sealed them.
	ID []byte
	// RootKeyVersion is the root key version that wrapped the key.
	RootKeyVersion uint32
	// Epoch is the epoch of the keyring that wrapped it (when created):
	// the key is stored only if the stored keyring is not newer.
	Epoch uint64
	// Wrapped is the key sealed under that root key version.
	Wrapped []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// KeyStore is what Keys needs of the database: the rows of wrapped data
// keys, and which of them is the audit MAC key.
type KeyStore interface {
	CreateDataKey(ctx context.Context, k WrappedKey) error
	// DataKey returns the wrapped key id; a missing one is fault.DataLoss.
	DataKey(ctx context.Context, id []byte) (WrappedKey, error)
	// AuditKeyID returns the id of the audit MAC key, nil when none yet.
	AuditKeyID(ctx context.Context) ([]byte, error)
	// SetAuditKey records id as the audit MAC key unless one is recorded
	// already, and returns the one in force.
	SetAuditKey(ctx context.Context, id []byte) ([]byte, error)
}

// Keys manages data keys: it creates them through Keeper, stores them
// wrapped in PostgreSQL, caches them unwrapped for a bounded time, and drops
// them all as soon as SPIKE seals (the Keeper client says so).
type Keys struct {
	keeper   *keeper.Client
	store    KeyStore
	now      func() time.Time
	cacheTTL time.Duration

	// createSlot admits one creator of the active key at a time; waiting
	// for it respects the caller's context.
	createSlot chan struct{}

	// cacheHits and cacheMisses count data key lookups answered from the
	// cache and through Keeper, for metrics.
	cacheHits, cacheMisses atomic.Uint64

	mu     sync.RWMutex
	active *activeKey
	cache  map[DEKID]cachedKey
	// macKey is the audit MAC key, once loaded.
	macKey []byte
}

// NewKeys returns a key manager that reaches Keeper through kc and keeps
// unwrapped data keys for reading for cacheTTL.
func NewKeys(kc *keeper.Client, store KeyStore, cacheTTL time.Duration) *Keys {
	k := &Keys{
		keeper:     kc,
		store:      store,
		now:        time.Now,
		cacheTTL:   cacheTTL,
		cache:      make(map[DEKID]cachedKey),
		createSlot: make(chan struct{}, 1),
	}
	kc.OnSeal(k.drop)
	return k
}

// CacheStats returns how many data key lookups were answered from the
// cache (hits) and had to go through Keeper (misses) since Keys was made.
func (k *Keys) CacheStats() (hits, misses uint64) {
	return k.cacheHits.Load(), k.cacheMisses.Load()
}

// Ready returns nil when SPIKE can serve secrets, and the reason
// otherwise (see keeper.Client.Ready).
func (k *Keys) Ready(ctx context.Context) error { return k.keeper.Ready(ctx) }

// Unsealed reports whether SPIKE held its root key when last checked.
func (k *Keys) Unsealed() bool { return k.keeper.Unsealed() }

// drop forgets every key: SPIKE sealed.
func (k *Keys) drop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.macKey)
	k.macKey = nil
	k.active = nil
	clear(k.cache)
}

// servable is the state check made under k.mu before a key is used or
// cached: a key must not outlive the seal that drop clears.
func (k *Keys) servable() error { return k.keeper.State().Err() }

// ActiveKey returns the data key new values are sealed with, creating and
// storing a new one when there is none or it has been used enough. Each call
// counts as one use.
func (k *Keys) ActiveKey(ctx context.Context) (Key, error) {
	if err := k.Ready(ctx); err != nil {
		return Key{}, err
	}
	if key, ok, err := k.takeActive(); ok || err != nil {
		return key, err
	}
	select {
	case k.createSlot <- struct{}{}:
		defer func() { <-k.createSlot }()
	case <-ctx.Done():
		return Key{}, ctx.Err()
	}
	if key, ok, err := k.takeActive(); ok || err != nil {
		return key, err
	}

	id, plain, err := k.generate(ctx)
	if err != nil {
		return Key{}, err
	}
	aead, err := NewAEAD(plain)
	clear(plain)
	if err != nil {
		return Key{}, fmt.Errorf("data key from keeper: %w", err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.servable(); err != nil {
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
	if err := k.servable(); err != nil {
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
	if err := k.Ready(ctx); err != nil {
		return nil, err
	}
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

// OpenCached is Open without I/O: when the data key that sealed the value
// is not in memory, it returns ok false and does nothing else (Fetch
// brings the key). For callers that hold a database lock.
func (k *Keys) OpenCached(sealed, aad []byte, what string) (plain []byte, ok bool, err error) {
	id, err := KeyID(sealed)
	if err != nil {
		return nil, true, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	k.mu.RLock()
	err = k.servable()
	c, cached := k.cache[id]
	k.mu.RUnlock()
	if err != nil {
		return nil, true, err
	}
	if !cached || !k.now().Before(c.expires) {
		return nil, false, nil
	}
	k.cacheHits.Add(1)
	plain, err = Open(c.aead, sealed, aad)
	if err != nil {
		return nil, true, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	return plain, true, nil
}

// Fetch brings the data key that sealed the value into memory.
func (k *Keys) Fetch(ctx context.Context, sealed []byte) error {
	if err := k.Ready(ctx); err != nil {
		return err
	}
	id, err := KeyID(sealed)
	if err != nil {
		return fault.Wrap(fault.DataLoss, err, "a sealed value failed authentication: the stored data was altered or is corrupt")
	}
	_, err = k.key(ctx, id)
	return err
}

func (k *Keys) key(ctx context.Context, id DEKID) (cipher.AEAD, error) {
	k.mu.RLock()
	err := k.servable()
	c, ok := k.cache[id]
	k.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if ok && k.now().Before(c.expires) {
		k.cacheHits.Add(1)
		return c.aead, nil
	}
	k.cacheMisses.Add(1)

	plain, err := k.unwrap(ctx, id)
	if err != nil {
		return nil, err
	}
	aead, err := NewAEAD(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("data key from keeper: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.servable(); err != nil {
		return nil, err
	}
	k.cacheLocked(id, aead)
	return aead, nil
}

// generate has Keeper make a new data key and stores it wrapped. The
// caller owns (and should clear) the plaintext key.
func (k *Keys) generate(ctx context.Context) (DEKID, []byte, error) {
	var id DEKID
	if _, err := rand.Read(id[:]); err != nil {
		return id, nil, fmt.Errorf("generate data key id: %w", err)
	}
	dk, err := k.keeper.GenerateDataKey(ctx, id[:])
	if err != nil {
		return id, nil, err
	}
	err = k.store.CreateDataKey(ctx, WrappedKey{ID: id[:], RootKeyVersion: dk.RootKeyVersion, Wrapped: dk.Wrapped, Epoch: dk.Epoch})
	if err != nil {
		clear(dk.Plaintext)
		if fault.CodeOf(err) == fault.Unavailable {
			// The Keeper missed a rotation: bring the Keepers to the
			// stored keyring, so that the retry finds one that has it.
			k.keeper.Resync(context.WithoutCancel(ctx))
		}
		return id, nil, fmt.Errorf("store data key: %w", err)
	}
	return id, dk.Plaintext, nil
}

// unwrap has Keeper unwrap the stored data key id. The caller owns (and
// should clear) the plaintext key.
func (k *Keys) unwrap(ctx context.Context, id DEKID) ([]byte, error) {
	row, err := k.store.DataKey(ctx, id[:])
	if err != nil {
		return nil, err
	}
	plain, err := k.keeper.DecryptDataKey(ctx, id[:], row.Wrapped, row.RootKeyVersion)
	if fault.CodeOf(err) != fault.DataLoss {
		return plain, err
	}
	// A rotation may have re-wrapped the key and destroyed the version it
	// was read under, between the read and the unwrap: read it again once.
	again, rerr := k.store.DataKey(ctx, id[:])
	if rerr != nil || again.RootKeyVersion == row.RootKeyVersion && bytes.Equal(again.Wrapped, row.Wrapped) {
		return nil, err
	}
	return k.keeper.DecryptDataKey(ctx, id[:], again.Wrapped, again.RootKeyVersion)
}

// MACKey returns a copy of the audit MAC key, creating it (a data key like
// any other, recorded in audit_keys) the first time. The caller should
// clear the copy when done. The cached key is dropped with the others when
// SPIKE seals.
func (k *Keys) MACKey(ctx context.Context) ([]byte, error) {
	if err := k.Ready(ctx); err != nil {
		return nil, err
	}
	k.mu.RLock()
	err := k.servable()
	cached := bytes.Clone(k.macKey)
	k.mu.RUnlock()
	if err != nil {
		clear(cached)
		return nil, err
	}
	if cached != nil {
		return cached, nil
	}
	stored, err := k.store.AuditKeyID(ctx)
	if err != nil {
		return nil, err
	}
	if stored == nil {
		id, plain, err := k.generate(ctx)
		clear(plain)
		if err != nil {
			return nil, err
		}
		// Another replica may have won the race: use whichever is recorded.
		if stored, err = k.store.SetAuditKey(ctx, id[:]); err != nil {
			return nil, err
		}
	}
	var id DEKID
	copy(id[:], stored)
	raw, err := k.unwrap(ctx, id)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.servable(); err != nil {
		clear(raw)
		return nil, err
	}
	k.macKey = raw
	return bytes.Clone(raw), nil
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
	k.cache[id] = cachedKey{aead: aead, expires: k.now().Add(k.cacheTTL)}
}
