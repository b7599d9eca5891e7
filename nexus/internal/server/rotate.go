package server

import (
	"context"
	"encoding/hex"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// Rewrap batch sizes: the default, and the most one call may ask for.
const (
	defaultRewrapBatch = 500
	maxRewrapBatch     = 5000
)

// RotateRootKey adds a root key version and has the Keepers take it.
func (o operatorServer) RotateRootKey(ctx context.Context, req *connect.Request[nexusv1.RotateRootKeyRequest]) (*connect.Response[nexusv1.RotateRootKeyResponse], error) {
	return unary(ctx, o.Server, req, o.rotateRootKey)
}

func (o operatorServer) rotateRootKey(ctx context.Context, c *call, m *nexusv1.RotateRootKeyRequest) (*nexusv1.RotateRootKeyResponse, error) {
	if m.GetExpectedActiveVersion() == 0 {
		// Without it a retried request could add two versions.
		return nil, fault.New(fault.Invalid, "expected_active_version: required (the active root key version, from status)")
	}
	stored, v, err := o.rotatable(ctx, c, m.GetExpectedActiveVersion())
	if err != nil {
		return nil, err
	}
	next, nv, err := o.keeper.Rotate(ctx, stored)
	if err != nil {
		return nil, err
	}
	if err := o.replace(ctx, stored, next, o.store.AdvanceKeyring(ctx, c.record, stored, next)); err != nil {
		return nil, err
	}
	held := o.keeper.Advance(ctx, next)
	_, behind, err := o.store.DataKeysBelow(ctx, nv.Active, 0)
	if err != nil {
		behind = -1 // the rotation stands; the count is for information
	}
	o.log.Warn("root key rotated", "keyring_id", hex.EncodeToString(next.ID), "epoch", next.Epoch,
		"from_version", v.Active, "active_version", nv.Active, "keepers_holding", held, "data_keys_behind", behind)
	return &nexusv1.RotateRootKeyResponse{ActiveKeyVersion: nv.Active, OldestKeyVersion: nv.Oldest, Epoch: next.Epoch, DataKeysBehind: behind}, nil
}

// RewrapDataKeys re-wraps a batch of data keys under the active root key
// version.
func (o operatorServer) RewrapDataKeys(ctx context.Context, req *connect.Request[nexusv1.RewrapDataKeysRequest]) (*connect.Response[nexusv1.RewrapDataKeysResponse], error) {
	return unary(ctx, o.Server, req, o.rewrapDataKeys)
}

func (o operatorServer) rewrapDataKeys(ctx context.Context, c *call, m *nexusv1.RewrapDataKeysRequest) (*nexusv1.RewrapDataKeysResponse, error) {
	limit := int(m.GetLimit())
	switch {
	case limit == 0:
		limit = defaultRewrapBatch
	case limit > maxRewrapBatch:
		return nil, fault.New(fault.Invalid, "limit: at most %d data keys per call", maxRewrapBatch)
	}
	_, v, err := o.rotatable(ctx, c, 0)
	if err != nil {
		return nil, err
	}
	keys, total, err := o.store.DataKeysBelow(ctx, v.Active, limit)
	if err != nil {
		return nil, err
	}
	out := make([]postgres.Rewrapped, 0, len(keys))
	for _, k := range keys {
		wrapped, version, err := o.keeper.RewrapDataKey(ctx, k.ID, k.Wrapped, k.RootKeyVersion)
		if err != nil {
			return nil, err
		}
		if version != v.Active {
			// A Keeper that has not taken the rotation yet answered.
			return nil, fault.New(fault.Unavailable, "a Keeper re-wrapped under root key version %d, not the active %d: it has not taken the rotation yet; retry", version, v.Active)
		}
		out = append(out, postgres.Rewrapped{Old: k, Wrapped: wrapped, RootKeyVersion: version})
	}
	n := int64(0)
	if len(out) > 0 {
		if n, err = o.store.RewrapDataKeys(ctx, c.record, out); err != nil {
			return nil, err
		}
	}
	return &nexusv1.RewrapDataKeysResponse{Rewrapped: n, Remaining: total - n, ActiveKeyVersion: v.Active}, nil
}

// DestroyOldRootKeys destroys the root key versions below the active one.
func (o operatorServer) DestroyOldRootKeys(ctx context.Context, req *connect.Request[nexusv1.DestroyOldRootKeysRequest]) (*connect.Response[nexusv1.DestroyOldRootKeysResponse], error) {
	return unary(ctx, o.Server, req, o.destroyOldRootKeys)
}

func (o operatorServer) destroyOldRootKeys(ctx context.Context, c *call, m *nexusv1.DestroyOldRootKeysRequest) (*nexusv1.DestroyOldRootKeysResponse, error) {
	stored, v, err := o.rotatable(ctx, c, m.GetExpectedActiveVersion())
	if err != nil {
		return nil, err
	}
	if v.Oldest == v.Active {
		return &nexusv1.DestroyOldRootKeysResponse{OldestKeyVersion: v.Oldest, Epoch: stored.Epoch}, nil
	}
	next, nv, err := o.keeper.DestroyRootKeys(ctx, stored, v.Active)
	if err != nil {
		return nil, err
	}
	if err := o.replace(ctx, stored, next, o.store.RetireRootKeys(ctx, c.record, stored, next, v.Active, o.checkDataKeys)); err != nil {
		return nil, err
	}
	held := o.keeper.Advance(ctx, next)
	o.log.Warn("old root key versions destroyed", "keyring_id", hex.EncodeToString(next.ID), "epoch", next.Epoch,
		"oldest_version", nv.Oldest, "keepers_holding", held)
	return &nexusv1.DestroyOldRootKeysResponse{OldestKeyVersion: nv.Oldest, Epoch: next.Epoch}, nil
}

// rotatable reads the stored keyring for a lifecycle step and the root key
// versions of its epoch, as a Keeper holding that epoch reports them. A
// non-zero expected active version must be the active one.
func (o operatorServer) rotatable(ctx context.Context, c *call, expected uint32) (keeper.Keyring, keeper.Versions, error) {
	stored, err := o.store.Keyring(ctx)
	if err != nil {
		return keeper.Keyring{}, keeper.Versions{}, err
	}
	if err := o.keeper.RolledBack(stored); err != nil {
		return keeper.Keyring{}, keeper.Versions{}, err
	}
	c.record.SetTarget(hex.EncodeToString(stored.ID))
	if len(stored.Sealed) == 0 {
		return keeper.Keyring{}, keeper.Versions{}, fault.New(fault.FailedPrecondition,
			"the stored keyring is in format 1, which cannot rotate: rekey it once (spike operator rekey; the same password will do), then rotate")
	}
	v, ok := o.keeper.VersionsAt(o.checkKeepers(ctx), stored.Epoch)
	if !ok && o.keeper.Resync(ctx) > 0 {
		// A rotation's last step did not reach the Keepers (this or
		// another Nexus stopped after its commit): they have it now.
		v, ok = o.keeper.VersionsAt(o.checkKeepers(ctx), stored.Epoch)
	}
	if !ok {
		if err := o.keeper.State().Err(); err != nil {
			return keeper.Keyring{}, keeper.Versions{}, err
		}
		return keeper.Keyring{}, keeper.Versions{}, fault.New(fault.FailedPrecondition,
			"no Keeper holds epoch %d of the keyring, the one stored, nor can take it: unseal (spike operator unseal), then try again", stored.Epoch)
	}
	if expected != 0 && expected != v.Active {
		return keeper.Keyring{}, keeper.Versions{}, fault.New(fault.FailedPrecondition,
			"the active root key version is %d, not %d: another rotation ran meanwhile (see spike operator status)", v.Active, expected)
	}
	return stored, v, nil
}

// replace settles the outcome err of storing next in place of stored: an
// answer lost after the commit is success if next is stored, and
// Unavailable (nothing happened) if stored still is.
func (o operatorServer) replace(ctx context.Context, stored, next keeper.Keyring, err error) error {
	if err == nil || fault.CodeOf(err) != fault.Unknown {
		return err
	}
	switch {
	case o.stored(ctx, next):
		return nil
	case o.stored(ctx, stored):
		return fault.Wrap(fault.Unavailable, err, "the new keyring was not stored; nothing changed")
	}
	return err
}

// Reseal batch sizes: the default, and the most one call may ask for.
const (
	defaultResealBatch = 100
	maxResealBatch     = 1000
)

// RewrapSecrets seals a batch of secrets again under the data key in use.
func (o operatorServer) RewrapSecrets(ctx context.Context, req *connect.Request[nexusv1.RewrapSecretsRequest]) (*connect.Response[nexusv1.RewrapSecretsResponse], error) {
	return unary(ctx, o.Server, req, o.rewrapSecrets)
}

func (o operatorServer) rewrapSecrets(ctx context.Context, c *call, m *nexusv1.RewrapSecretsRequest) (*nexusv1.RewrapSecretsResponse, error) {
	limit := int(m.GetLimit())
	switch {
	case limit == 0:
		limit = defaultResealBatch
	case limit > maxResealBatch:
		return nil, fault.New(fault.Invalid, "limit: at most %d secrets per call", maxResealBatch)
	}
	active, err := o.keys.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	c.record.SetTarget(m.GetAfter())
	paths, total, err := o.store.SecretsToReseal(ctx, active.ID[:], m.GetAfter(), limit, m.GetAfter() == "")
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.RewrapSecretsResponse{}
	for _, path := range paths {
		resealed, err := o.engine.Reseal(ctx, path)
		if err != nil {
			return nil, err
		}
		if resealed {
			resp.Resealed++
		}
		resp.Next = path
	}
	resp.Remaining = -1 // counted on the first call only
	if total >= 0 {
		resp.Remaining = total - int64(len(paths))
	}
	if len(paths) < limit {
		resp.Next, resp.Remaining = "", 0 // the last batch
	}
	return resp, nil
}

// RetireDataKeys deletes the data keys nothing refers to any more.
func (o operatorServer) RetireDataKeys(ctx context.Context, req *connect.Request[nexusv1.RetireDataKeysRequest]) (*connect.Response[nexusv1.RetireDataKeysResponse], error) {
	return unary(ctx, o.Server, req, o.retireDataKeys)
}

func (o operatorServer) retireDataKeys(ctx context.Context, c *call, _ *nexusv1.RetireDataKeysRequest) (*nexusv1.RetireDataKeysResponse, error) {
	// Admin tokens are few: they are sealed again here, not in batches.
	if _, err := o.tokens.Reseal(ctx); err != nil {
		return nil, err
	}
	active, err := o.keys.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	retired, kept, err := o.store.RetireDataKeys(ctx, c.record, active.ID[:])
	if err != nil {
		return nil, err
	}
	if retired > 0 {
		o.log.Warn("data keys retired", "retired", retired, "kept", kept)
	}
	return &nexusv1.RetireDataKeysResponse{Retired: retired, Kept: kept}, nil
}

// checkDataKeys has a Keeper unwrap every data key under the root key
// version its row names, before older versions are destroyed: the version
// column is plain, and a row that names a version it is not wrapped under
// would otherwise lose its key for good.
func (o operatorServer) checkDataKeys(ctx context.Context, keys []envelope.WrappedKey) error {
	for _, k := range keys {
		plain, err := o.keeper.DecryptDataKey(ctx, k.ID, k.Wrapped, k.RootKeyVersion)
		clear(plain)
		if err != nil {
			return fault.Wrap(fault.CodeOf(err), err, "data key %x does not unwrap under root key version %d, which its row names: nothing destroyed", k.ID, k.RootKeyVersion)
		}
	}
	return nil
}
