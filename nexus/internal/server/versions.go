package server

import (
	"context"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/secret"
)

// DeleteSecret soft-deletes versions; the sealed data stays until destroyed.
func (s secretServer) DeleteSecret(ctx context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error) {
	return unary(ctx, s.Server, req, s.deleteSecret)
}

func (s secretServer) deleteSecret(ctx context.Context, c *call, m *nexusv1.DeleteSecretRequest) (*nexusv1.DeleteSecretResponse, error) {
	vs, err := s.changeVersions(ctx, c, m.GetPath(), m.GetVersions(), secret.Delete)
	if err != nil {
		return nil, err
	}
	return &nexusv1.DeleteSecretResponse{Versions: vs}, nil
}

// UndeleteSecret restores soft-deleted versions.
func (s secretServer) UndeleteSecret(ctx context.Context, req *connect.Request[nexusv1.UndeleteSecretRequest]) (*connect.Response[nexusv1.UndeleteSecretResponse], error) {
	return unary(ctx, s.Server, req, s.undeleteSecret)
}

func (s secretServer) undeleteSecret(ctx context.Context, c *call, m *nexusv1.UndeleteSecretRequest) (*nexusv1.UndeleteSecretResponse, error) {
	vs, err := s.changeVersions(ctx, c, m.GetPath(), m.GetVersions(), secret.Undelete)
	if err != nil {
		return nil, err
	}
	return &nexusv1.UndeleteSecretResponse{Versions: vs}, nil
}

// DestroySecret wipes the sealed data of versions.
func (s secretServer) DestroySecret(ctx context.Context, req *connect.Request[nexusv1.DestroySecretRequest]) (*connect.Response[nexusv1.DestroySecretResponse], error) {
	return unary(ctx, s.Server, req, s.destroySecret)
}

func (s secretServer) destroySecret(ctx context.Context, c *call, m *nexusv1.DestroySecretRequest) (*nexusv1.DestroySecretResponse, error) {
	vs, err := s.changeVersions(ctx, c, m.GetPath(), m.GetVersions(), secret.Destroy)
	if err != nil {
		return nil, err
	}
	return &nexusv1.DestroySecretResponse{Versions: vs}, nil
}

func (s secretServer) changeVersions(ctx context.Context, c *call, path string, versions []int64, change secret.VersionChange) ([]int64, error) {
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := secret.ValidateVersions(versions); err != nil {
		return nil, err
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	return s.engine.Change(ctx, c.record, path, versions, change)
}
