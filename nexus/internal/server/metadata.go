package server

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/engine"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// GetSecretMetadata returns a secret's settings, custom metadata and the
// state of each retained version.
func (s secretServer) GetSecretMetadata(ctx context.Context, req *connect.Request[nexusv1.GetSecretMetadataRequest]) (*connect.Response[nexusv1.GetSecretMetadataResponse], error) {
	return unary(ctx, s.Server, req, s.getSecretMetadata)
}

func (s secretServer) getSecretMetadata(ctx context.Context, c *call, m *nexusv1.GetSecretMetadataRequest) (*nexusv1.GetSecretMetadataResponse, error) {
	path := m.GetPath()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	md, err := s.engine.Metadata(ctx, path)
	if err != nil {
		return nil, err
	}
	return &nexusv1.GetSecretMetadataResponse{Metadata: metadataMessage(md)}, nil
}

// UpdateSecretMetadata changes settings and custom metadata; custom
// metadata is sealed like values, bound to the secret's path.
func (s secretServer) UpdateSecretMetadata(ctx context.Context, req *connect.Request[nexusv1.UpdateSecretMetadataRequest]) (*connect.Response[nexusv1.UpdateSecretMetadataResponse], error) {
	return unary(ctx, s.Server, req, s.updateSecretMetadata)
}

func (s secretServer) updateSecretMetadata(ctx context.Context, c *call, m *nexusv1.UpdateSecretMetadataRequest) (*nexusv1.UpdateSecretMetadataResponse, error) {
	path := m.GetPath()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	u := secret.MetadataUpdate{Path: path, MaxVersions: m.MaxVersions, CASRequired: m.CasRequired}
	if u.MaxVersions != nil {
		if err := secret.ValidateMaxVersions(*u.MaxVersions); err != nil {
			return nil, err
		}
	}
	var custom map[string]string
	if cm := m.GetCustomMetadata(); cm != nil {
		if err := secret.ValidateCustomMetadata(cm.GetEntries()); err != nil {
			return nil, err
		}
		u.SetCustomMetadata, custom = true, cm.GetEntries()
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	md, err := s.engine.UpdateMetadata(ctx, c.record, u, custom)
	if err != nil {
		return nil, err
	}
	return &nexusv1.UpdateSecretMetadataResponse{Metadata: metadataMessage(md)}, nil
}

// DeleteSecretMetadata removes a secret and all its versions.
func (s secretServer) DeleteSecretMetadata(ctx context.Context, req *connect.Request[nexusv1.DeleteSecretMetadataRequest]) (*connect.Response[nexusv1.DeleteSecretMetadataResponse], error) {
	return unary(ctx, s.Server, req, s.deleteSecretMetadata)
}

func (s secretServer) deleteSecretMetadata(ctx context.Context, c *call, m *nexusv1.DeleteSecretMetadataRequest) (*nexusv1.DeleteSecretMetadataResponse, error) {
	path := m.GetPath()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	if err := s.store.DeleteMetadata(ctx, c.record, path); err != nil {
		return nil, err
	}
	return &nexusv1.DeleteSecretMetadataResponse{}, nil
}

// metadataMessage builds the API message.
func metadataMessage(m engine.Metadata) *nexusv1.SecretMetadata {
	pm := &nexusv1.SecretMetadata{
		Path:                 m.Path,
		CurrentVersion:       m.CurrentVersion,
		OldestVersion:        m.OldestVersion,
		MaxVersions:          m.MaxVersions,
		EffectiveMaxVersions: m.EffectiveMaxVersions,
		CasRequired:          m.CASRequired,
		CustomMetadata:       m.Custom,
		CreatedAt:            timestamppb.New(m.CreatedAt),
		UpdatedAt:            timestamppb.New(m.UpdatedAt),
	}
	for _, v := range m.Versions {
		vm := &nexusv1.VersionMetadata{
			Version:   v.Version,
			State:     nexusv1.VersionState_VERSION_STATE_ACTIVE,
			CreatedAt: timestamppb.New(v.CreatedAt),
			CreatedBy: v.CreatedBy,
		}
		if v.DeletedAt != nil {
			vm.State = nexusv1.VersionState_VERSION_STATE_DELETED
			vm.DeletedAt = timestamppb.New(*v.DeletedAt)
		}
		if v.DestroyedAt != nil {
			vm.State = nexusv1.VersionState_VERSION_STATE_DESTROYED
			vm.DestroyedAt = timestamppb.New(*v.DestroyedAt)
		}
		pm.Versions = append(pm.Versions, vm)
	}
	return pm
}
