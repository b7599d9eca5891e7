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
// sealed/unsealed state does not route the call. Each Keeper is asked in
// turn until one answers or gives a verdict. The caller owns (and should
// clear) the plaintext.
func (c *Client) UnwrapRestoring(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, error) {
	var plaintext []byte
	err := c.any(ctx, "unwrap data key "+hex.EncodeToString(id), func(ctx context.Context, k Endpoint) error {
		resp, err := k.RPC.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
			DekId: id, Wrapped: wrapped, RootKeyVersion: rootKeyVersion,
		}))
		if err == nil {
			plaintext = resp.Msg.GetPlaintext()
		}
		return err
	})
	return plaintext, err
}
