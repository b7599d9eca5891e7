package keeper

import (
	"context"
	"encoding/hex"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
)

// UnwrapRestoring has a Keeper unwrap the data key id during a restore:
// the keyring it needs was just given to the Keepers with Unseal, but is
// not the database's yet (the restore has not committed), so the
// sealed/unsealed state does not route the call. Every Keeper is asked in
// turn until one unwraps it: one that refused the unseal (it holds another
// keyring, or a newer epoch of this one) may refuse the key for its own
// reasons. With none left, the error is the first Keeper's verdict on the
// key, or else the last failure. The caller owns (and should clear) the
// plaintext.
func (c *Client) UnwrapRestoring(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, error) {
	var verdict, last error
	for _, k := range c.keepers {
		actx, cancel := context.WithTimeout(ctx, kdfTimeout)
		resp, err := k.RPC.DecryptDataKey(actx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
			DekId: id, Wrapped: wrapped, RootKeyVersion: rootKeyVersion,
		}))
		cancel()
		if err == nil {
			return resp.Msg.GetPlaintext(), nil
		}
		if ctx.Err() != nil {
			return nil, c.translate("unwrap data key "+hex.EncodeToString(id), err)
		}
		if verdict == nil && !failover(err) {
			verdict = err
		}
		last = err
	}
	if verdict != nil {
		return nil, c.translate("unwrap data key "+hex.EncodeToString(id), verdict)
	}
	return nil, c.translate("unwrap data key "+hex.EncodeToString(id), last)
}
