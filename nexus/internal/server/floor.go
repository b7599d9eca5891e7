package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"
)

// FloorHandler serves SecretService's GetSecret and PutSecret as a handler
// that does no work of SPIKE's own: no policy, no database, no Keeper, no
// audit. It answers every GetSecret with one value of valueSize bytes and
// every PutSecret with the next version number, with the Connect options
// Nexus's services have. Served by mtls.NewServer as Nexus is (same TLS,
// SVID check, caller extraction, HTTP settings), it is the protocol floor
// that `make bench` measures SPIKE against: the most any Connect server
// over SPIFFE mTLS could do on the machine. Every other procedure is
// Unimplemented.
func FloorHandler(valueSize int) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewSecretServiceHandler(&floorSecrets{
		value:   strings.Repeat("x", valueSize),
		created: timestamppb.New(time.Now()),
	}, handlerOptions()...))
	return mux
}

type floorSecrets struct {
	nexusv1connect.UnimplementedSecretServiceHandler
	value   string
	created *timestamppb.Timestamp
	version atomic.Int64
}

var errFloorNoCaller = errors.New("no caller SVID")

func (f *floorSecrets) GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	id, ok := mtls.Caller(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errFloorNoCaller)
	}
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: &nexusv1.Secret{
		Path:      req.Msg.GetPath(),
		Version:   1,
		Data:      map[string]string{"v": f.value},
		CreatedAt: f.created,
		CreatedBy: id.String(),
	}}), nil
}

func (f *floorSecrets) PutSecret(ctx context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	if _, ok := mtls.Caller(ctx); !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errFloorNoCaller)
	}
	return connect.NewResponse(&nexusv1.PutSecretResponse{
		Path:      req.Msg.GetPath(),
		Version:   f.version.Add(1),
		CreatedAt: timestamppb.Now(),
	}), nil
}
