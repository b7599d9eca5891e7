package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// WatchSecrets is not served yet: the RPC is declared so that clients can
// be built against it while the server side is written.
func (secretServer) WatchSecrets(context.Context, *connect.Request[nexusv1.WatchSecretsRequest],
	*connect.ServerStream[nexusv1.WatchSecretsResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("WatchSecrets is not served by this Nexus yet"))
}
