package server

import (
	"context"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// DeleteSecret soft-deletes versions; the sealed data stays until destroyed.
func (s secrets) DeleteSecret(ctx context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error) {
	vs, err := s.changeVersions(ctx, req.Msg.GetPath(), req.Msg.GetVersions(), postgres.Delete)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DeleteSecretResponse{Versions: vs}), nil
}

// UndeleteSecret restores soft-deleted versions.
func (s secrets) UndeleteSecret(ctx context.Context, req *connect.Request[nexusv1.UndeleteSecretRequest]) (*connect.Response[nexusv1.UndeleteSecretResponse], error) {
	vs, err := s.changeVersions(ctx, req.Msg.GetPath(), req.Msg.GetVersions(), postgres.Undelete)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.UndeleteSecretResponse{Versions: vs}), nil
}

// DestroySecret wipes the sealed data of versions.
func (s secrets) DestroySecret(ctx context.Context, req *connect.Request[nexusv1.DestroySecretRequest]) (*connect.Response[nexusv1.DestroySecretResponse], error) {
	vs, err := s.changeVersions(ctx, req.Msg.GetPath(), req.Msg.GetVersions(), postgres.Destroy)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DestroySecretResponse{Versions: vs}), nil
}

func (s secrets) changeVersions(ctx context.Context, path string, versions []int64, change postgres.VersionChange) ([]int64, error) {
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := secret.ValidateVersions(versions); err != nil {
		return nil, err
	}
	if err := s.keys.Ready(ctx); err != nil {
		return nil, err
	}
	return s.store.ChangeVersions(ctx, path, versions, change)
}
