package keeper

import (
	"context"
	"encoding/hex"
	"fmt"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
)

// Versions is a keyring's span of root key versions.
type Versions struct {
	Active, Oldest uint32
}

// Rotate has a Keeper holding kr's keyring key return kr with a new root
// key version as the active one. No Keeper's state changes: store the
// result, then Advance.
func (c *Client) Rotate(ctx context.Context, kr Keyring) (Keyring, Versions, error) {
	var (
		next Keyring
		v    Versions
	)
	err := c.call(ctx, "rotate root key", func(ctx context.Context, rpc keeperv1connect.KeeperServiceClient) error {
		resp, err := rpc.Rotate(ctx, connect.NewRequest(&keeperv1.RotateRequest{Keyring: sealedOf(kr)}))
		if err == nil {
			next = keyringOf(resp.Msg.GetKeyring())
			v = Versions{Active: resp.Msg.GetActiveKeyVersion(), Oldest: resp.Msg.GetOldestKeyVersion()}
		}
		return err
	})
	return next, v, err
}

// DestroyRootKeys has a Keeper return kr without the root key versions
// below below. No Keeper's state changes: store the result, then Advance.
func (c *Client) DestroyRootKeys(ctx context.Context, kr Keyring, below uint32) (Keyring, Versions, error) {
	var (
		next Keyring
		v    Versions
	)
	err := c.call(ctx, "destroy root keys", func(ctx context.Context, rpc keeperv1connect.KeeperServiceClient) error {
		resp, err := rpc.DestroyRootKeys(ctx, connect.NewRequest(&keeperv1.DestroyRootKeysRequest{Keyring: sealedOf(kr), BelowVersion: below}))
		if err == nil {
			next = keyringOf(resp.Msg.GetKeyring())
			v = Versions{Active: resp.Msg.GetActiveKeyVersion(), Oldest: resp.Msg.GetOldestKeyVersion()}
		}
		return err
	})
	return next, v, err
}

// Advance tells every Keeper at once that kr, a newer epoch of the keyring
// they hold, is committed: each opens it with its keyring key and holds
// it. It returns how many Keepers hold kr's epoch afterwards; once one
// does, Nexus asks for new data keys at that epoch only. It runs with time
// of its own, whatever is left of ctx's: the epoch is committed, and
// Keepers that do not take it now are brought to it by Resync. One that
// could not (unreachable, restarting, rekeyed since it was unsealed) also
// takes it from a peer once it learns of it.
func (c *Client) Advance(ctx context.Context, kr Keyring) int {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sealTimeout)
	defer cancel()
	sealed := sealedOf(kr)
	errs := c.each(ctx, sealTimeout, func(ctx context.Context, _ int, k Endpoint) error {
		resp, err := k.RPC.Advance(ctx, connect.NewRequest(&keeperv1.AdvanceRequest{Keyring: sealed}))
		if err == nil && resp.Msg.GetEpoch() < kr.Epoch {
			err = fmt.Errorf("holds epoch %d after Advance to %d", resp.Msg.GetEpoch(), kr.Epoch)
		}
		return err
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			c.log.Warn("keeper did not advance to the new keyring epoch; it will fetch it from a peer or be advanced again",
				"keeper", c.keepers[i].Name, "keyring_id", hex.EncodeToString(kr.ID), "epoch", kr.Epoch, "error", err)
			continue
		}
		n++
	}
	if n > 0 {
		c.Committed(kr.ID, kr.Epoch)
	}
	return n
}

// Resync reads the stored keyring and has every Keeper advance to it:
// after a rotation whose Advance reached no Keeper (Nexus stopped after
// the commit, or the Keepers were unreachable), so that nobody has to
// unseal. Concurrent calls share one. It returns how many Keepers hold the
// stored epoch.
func (c *Client) Resync(ctx context.Context) int {
	v, _, _ := c.recheck.Do("resync", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbCheckTimeout)
		kr, err := c.keyrings.Keyring(ctx)
		cancel()
		if err == nil {
			err = c.RolledBack(kr)
		}
		if err != nil || len(kr.Sealed) == 0 {
			if err != nil {
				c.log.Warn("resync: cannot read the stored keyring", "error", err)
			}
			return 0, nil
		}
		return c.Advance(ctx, kr), nil
	})
	return v.(int)
}

// RewrapDataKey has a Keeper re-wrap a data key under the active root key
// version, and returns the new wrapped form and its version.
func (c *Client) RewrapDataKey(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, uint32, error) {
	var (
		out     []byte
		version uint32
	)
	err := c.call(ctx, "rewrap data key "+hex.EncodeToString(id), func(ctx context.Context, rpc keeperv1connect.KeeperServiceClient) error {
		resp, err := rpc.RewrapDataKey(ctx, connect.NewRequest(&keeperv1.RewrapDataKeyRequest{DekId: id, Wrapped: wrapped, RootKeyVersion: rootKeyVersion}))
		if err == nil {
			out, version = resp.Msg.GetWrapped(), resp.Msg.GetRootKeyVersion()
		}
		return err
	})
	return out, version, err
}

// VersionsAt returns the root key versions of the keyring at epoch, as a
// Keeper holding that epoch reported them in st.
func (c *Client) VersionsAt(st State, epoch uint64) (Versions, bool) {
	for _, k := range st.Keepers {
		if k.Holds && k.Epoch == epoch {
			return Versions{Active: k.ActiveKeyVersion, Oldest: k.OldestKeyVersion}, true
		}
	}
	return Versions{}, false
}

// Adopt has every Keeper open kr, just stored in place of an older epoch
// of the same keyring, with creds, and hold it: after a rekey, only the new
// credentials open the new keyring key, which later rotations need. It
// returns how many did; the others take it from a peer when they learn of
// the new epoch.
func (c *Client) Adopt(ctx context.Context, creds Credentials, kr Keyring) int {
	sealed := sealedOf(kr)
	errs := c.each(ctx, kdfTimeout, func(ctx context.Context, _ int, k Endpoint) error {
		_, err := k.RPC.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: creds.Password, Shares: creds.Shares, Keyring: sealed}))
		return err
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			c.log.Warn("keeper did not take the rekeyed keyring; it will fetch it from a peer", "keeper", c.keepers[i].Name, "error", err)
			continue
		}
		n++
	}
	if n > 0 {
		c.Committed(kr.ID, kr.Epoch)
	}
	return n
}
