package envelope

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/singleflight"

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
	// DBErr says why the keyring could not be read, if it could not.
	DBErr error
	// reason explains a sealed state to callers.
	reason string
}

// Err returns the caller-facing error for a state that cannot serve
// secrets, or nil when it can. A dependency that is down is Unavailable
// (clients retry it); a Keeper without the keyring is FailedPrecondition.
func (s State) Err() error {
	switch {
	case !s.Initialised && s.DBErr != nil:
		return fault.Wrap(fault.Unavailable, s.DBErr, "database unavailable")
	case !s.Initialised:
		return fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")
	case s.KeeperErr != nil:
		return fault.Wrap(fault.Unavailable, s.KeeperErr, "SPIKE is sealed: %s; when it is back, %s", s.reason, unsealHint)
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

	// createSlot admits one creator of the active key at a time; waiting
	// for it respects the caller's context.
	createSlot chan struct{}

	// seq numbers state observations; applied is the newest one applied,
	// so a slow Check never overwrites what a later one saw.
	seq atomic.Uint64

	// recheck shares one Check among the requests that found the state
	// unable to serve.
	recheck singleflight.Group

	// cacheHits and cacheMisses count data key lookups answered from the
	// cache and through Keeper, for metrics.
	cacheHits, cacheMisses atomic.Uint64

	mu      sync.RWMutex
	applied uint64
	state   State
	active  *activeKey
	cache   map[DEKID]cachedKey
	// macKey is the audit MAC key, once loaded.
	macKey []byte
}

// NewKeys returns a key manager. It starts sealed; call Check or Watch.
func NewKeys(keeper keeperv1connect.KeeperServiceClient, store *postgres.Store, log *slog.Logger) *Keys {
	return &Keys{
		keeper:     keeper,
		store:      store,
		log:        log,
		now:        time.Now,
		state:      State{reason: "Nexus has not reached Keeper yet"},
		cache:      make(map[DEKID]cachedKey),
		createSlot: make(chan struct{}, 1),
	}
}

// State returns the last known state.
func (k *Keys) State() State {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.state
}

// CacheStats returns how many data key lookups were answered from the
// cache (hits) and had to go through Keeper (misses) since Keys was made.
func (k *Keys) CacheStats() (hits, misses uint64) {
	return k.cacheHits.Load(), k.cacheMisses.Load()
}

// Ready returns nil when secrets can be served, and otherwise the reason as
// a caller-facing error. When the last known state cannot serve, it checks
// again first (one check at a time, shared by concurrent callers): another
// Nexus replica may have initialised or unsealed SPIKE since the last
// periodic check.
func (k *Keys) Ready(ctx context.Context) error {
	if err := k.State().Err(); err == nil {
		return nil
	}
	ch := k.recheck.DoChan("check", func() (any, error) {
		return k.Check(context.WithoutCancel(ctx)), nil
	})
	select {
	case r := <-ch:
		return r.Val.(State).Err()
	case <-ctx.Done():
		return ctx.Err()
	}
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

// checkTimeout bounds each of the two questions one Check asks.
const checkTimeout = 3 * time.Second

// Check asks the database and Keeper for the current state and updates it.
// The keyring id never changes once stored, so after the first success only
// Keeper is asked: a busy database (an exhausted pool) cannot make SPIKE
// look sealed.
func (k *Keys) Check(ctx context.Context) State {
	seq := k.seq.Add(1)
	prev := k.State()
	next := State{Initialised: prev.Initialised, KeyringID: prev.KeyringID}
	if !prev.Initialised {
		dbCtx, cancel := context.WithTimeout(ctx, checkTimeout)
		kr, err := k.store.Keyring(dbCtx)
		cancel()
		switch {
		case fault.CodeOf(err) == fault.FailedPrecondition:
			next.reason = "not initialised"
		case err != nil:
			k.log.Warn("keyring lookup failed", "error", err)
			next.DBErr = err
		default:
			next.Initialised = true
			next.KeyringID = kr.ID
		}
	}

	keeperCtx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	resp, err := k.keeper.Status(keeperCtx, connect.NewRequest(&keeperv1.StatusRequest{}))
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
	return k.setState(seq, next)
}

// setState applies the observation numbered seq unless a newer one was
// applied already, and returns the state in force.
func (k *Keys) setState(seq uint64, next State) State {
	k.mu.Lock()
	defer k.mu.Unlock()
	if seq < k.applied {
		return k.state
	}
	k.applied = seq
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
	return next
}

// markSealed records that Keeper answered "sealed" to a key request.
func (k *Keys) markSealed() {
	seq := k.seq.Add(1)
	st := k.State()
	st.Unsealed = false
	st.reason = "Keeper holds no root key (it has restarted)"
	k.setState(seq, st)
}

func (k *Keys) dropLocked() {
	clear(k.macKey)
	k.macKey = nil
	k.active = nil
	clear(k.cache)
}

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

func (k *Keys) key(ctx context.Context, id DEKID) (cipher.AEAD, error) {
	k.mu.RLock()
	err := k.state.Err()
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
	if err := k.state.Err(); err != nil {
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
	resp, err := k.keeper.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: id[:]}))
	if err != nil {
		return id, nil, k.keeperError("generate data key", err)
	}
	err = k.store.CreateDataKey(ctx, postgres.DataKey{
		ID:             id[:],
		RootKeyVersion: resp.Msg.GetRootKeyVersion(),
		Wrapped:        resp.Msg.GetWrapped(),
	})
	if err != nil {
		clear(resp.Msg.GetPlaintext())
		return id, nil, fmt.Errorf("store data key: %w", err)
	}
	return id, resp.Msg.GetPlaintext(), nil
}

// unwrap has Keeper unwrap the stored data key id. The caller owns (and
// should clear) the plaintext key.
func (k *Keys) unwrap(ctx context.Context, id DEKID) ([]byte, error) {
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
	return resp.Msg.GetPlaintext(), nil
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
	cached := bytes.Clone(k.macKey)
	k.mu.RUnlock()
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
	if err := k.state.Err(); err != nil {
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
