package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// secrets implements nexusv1connect.SecretServiceHandler.
type secrets struct{ *Server }

// PutSecret seals data under the active data key, bound to the new
// version's identity, and stores it as the next version.
func (s secrets) PutSecret(ctx context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	path, data := req.Msg.GetPath(), req.Msg.GetData()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := secret.ValidateData(data); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode secret data: %w", err)
	}
	defer clear(plain)
	key, err := s.keys.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	caller, _ := mtls.Caller(ctx)
	v, err := s.store.PutSecret(ctx, path, caller.String(), key.ID[:], func(version int64) ([]byte, error) {
		return key.Seal(plain, envelope.SecretAAD(path, version))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.PutSecretResponse{
		Path:      v.Path,
		Version:   v.Version,
		CreatedAt: timestamppb.New(v.CreatedAt),
	}), nil
}

// GetSecret opens the requested version. A value that does not
// authenticate against its row is reported as DataLoss, never returned.
func (s secrets) GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	path, version := req.Msg.GetPath(), req.Msg.GetVersion()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, fault.New(fault.Invalid, "version: must be 0 (latest) or a positive version number")
	}
	if err := s.keys.State().Err(); err != nil {
		return nil, err
	}
	row, err := s.store.SecretVersion(ctx, path, version)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("version %d of %s", row.Version, row.Path)
	if id, err := envelope.KeyID(row.Sealed); err != nil || !bytes.Equal(id[:], row.DEKID) {
		return nil, fault.New(fault.DataLoss, "%s failed authentication: its data key reference was altered", what)
	}
	plain, err := s.keys.Open(ctx, row.Sealed, envelope.SecretAAD(row.Path, row.Version), what)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s does not decode", what)
	}
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: &nexusv1.Secret{
		Path:      row.Path,
		Version:   row.Version,
		Data:      data,
		CreatedAt: timestamppb.New(row.CreatedAt),
		CreatedBy: row.CreatedBy,
	}}), nil
}

// ListSecrets returns the live secret paths under a prefix.
func (s secrets) ListSecrets(ctx context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	prefix := req.Msg.GetPrefix()
	if err := secret.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := s.keys.State().Err(); err != nil {
		return nil, err
	}
	paths, err := s.store.ListSecrets(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.ListSecretsResponse{Paths: paths}), nil
}

// DeleteSecret soft-deletes versions; the sealed data stays until a later
// destroy.
func (s secrets) DeleteSecret(ctx context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error) {
	path, versions := req.Msg.GetPath(), req.Msg.GetVersions()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	for _, v := range versions {
		if v <= 0 {
			return nil, fault.New(fault.Invalid, "versions: %d is not a version number", v)
		}
	}
	if err := s.keys.State().Err(); err != nil {
		return nil, err
	}
	deleted, err := s.store.DeleteSecretVersions(ctx, path, versions)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DeleteSecretResponse{Versions: deleted}), nil
}
