package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// secretServer implements nexusv1connect.SecretServiceHandler.
type secretServer struct{ *Server }

// maxRewriteAttempts bounds how often patch and rollback retry when a
// concurrent writer moved the secret between their read and their write.
const maxRewriteAttempts = 5

// PutSecret seals data under the active data key, bound to the new
// version's identity, and stores it as the next version.
func (s secretServer) PutSecret(ctx context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	return unary(ctx, s.Server, req, s.putSecret)
}

func (s secretServer) putSecret(ctx context.Context, c *call, m *nexusv1.PutSecretRequest) (*nexusv1.PutSecretResponse, error) {
	path, data := m.GetPath(), m.GetData()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := secret.ValidateData(data); err != nil {
		return nil, err
	}
	if m.Cas != nil {
		if err := secret.ValidateCAS(*m.Cas); err != nil {
			return nil, err
		}
	}
	v, err := s.write(ctx, c, path, data, m.Cas)
	if err != nil {
		return nil, err
	}
	return &nexusv1.PutSecretResponse{
		Path: v.Path, Version: v.Version, CreatedAt: timestamppb.New(v.CreatedAt),
	}, nil
}

// GetSecret opens the requested version. A value that does not
// authenticate against its row is reported as DataLoss, never returned.
func (s secretServer) GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	return unary(ctx, s.Server, req, s.getSecret)
}

func (s secretServer) getSecret(ctx context.Context, c *call, m *nexusv1.GetSecretRequest) (*nexusv1.GetSecretResponse, error) {
	path, version := m.GetPath(), m.GetVersion()
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if err := secret.ValidateVersion(version); err != nil {
		return nil, err
	}
	r, data, err := s.read(ctx, path, version)
	if err != nil {
		return nil, err
	}
	return &nexusv1.GetSecretResponse{Secret: &nexusv1.Secret{
		Path:      r.Path,
		Version:   r.Version.Version,
		Data:      data,
		CreatedAt: timestamppb.New(r.CreatedAt),
		CreatedBy: r.CreatedBy,
	}}, nil
}

// PatchSecret merges keys into the latest version and writes the result as
// a new version. Without cas it retries when a concurrent write lands
// between its read and its write, so no concurrent update is lost.
func (s secretServer) PatchSecret(ctx context.Context, req *connect.Request[nexusv1.PatchSecretRequest]) (*connect.Response[nexusv1.PatchSecretResponse], error) {
	return unary(ctx, s.Server, req, s.patchSecret)
}

func (s secretServer) patchSecret(ctx context.Context, c *call, m *nexusv1.PatchSecretRequest) (*nexusv1.PatchSecretResponse, error) {
	path, patch, userCAS := m.GetPath(), m.GetData(), m.Cas
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if len(patch) == 0 {
		return nil, fault.New(fault.Invalid, "data: must have at least one key to patch")
	}
	if userCAS != nil {
		if err := secret.ValidateCAS(*userCAS); err != nil {
			return nil, err
		}
	}
	v, err := s.rewrite(ctx, c, path, 0, userCAS, func(r secret.Read, data map[string]string) (map[string]string, error) {
		if userCAS == nil && r.CASRequired {
			return nil, errCASRequired(path, r.Current)
		}
		for k, val := range patch {
			data[k] = val
		}
		return data, secret.ValidateData(data)
	})
	if err != nil {
		return nil, err
	}
	return &nexusv1.PatchSecretResponse{
		Path: v.Path, Version: v.Version, CreatedAt: timestamppb.New(v.CreatedAt),
	}, nil
}

// RollbackSecret writes the data of an older version as a new version,
// with check-and-set as for PutSecret.
func (s secretServer) RollbackSecret(ctx context.Context, req *connect.Request[nexusv1.RollbackSecretRequest]) (*connect.Response[nexusv1.RollbackSecretResponse], error) {
	return unary(ctx, s.Server, req, s.rollbackSecret)
}

func (s secretServer) rollbackSecret(ctx context.Context, c *call, m *nexusv1.RollbackSecretRequest) (*nexusv1.RollbackSecretResponse, error) {
	path, version, userCAS := m.GetPath(), m.GetVersion(), m.Cas
	if err := secret.ValidatePath(path); err != nil {
		return nil, err
	}
	if version <= 0 {
		return nil, fault.New(fault.Invalid, "version: must name the version to roll back to, got %d", version)
	}
	if userCAS != nil {
		if err := secret.ValidateCAS(*userCAS); err != nil {
			return nil, err
		}
	}
	v, err := s.rewrite(ctx, c, path, version, userCAS, func(r secret.Read, data map[string]string) (map[string]string, error) {
		if userCAS == nil && r.CASRequired {
			return nil, errCASRequired(path, r.Current)
		}
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return &nexusv1.RollbackSecretResponse{
		Path: v.Path, Version: v.Version, CreatedAt: timestamppb.New(v.CreatedAt),
	}, nil
}

// rewrite reads a version (0: the latest), computes new data from it and
// writes that as a new version, with check-and-set against the version that
// was current at the read. A conflict is returned when the caller gave its
// own cas, and retried otherwise.
func (s secretServer) rewrite(ctx context.Context, c *call, path string, version int64, userCAS *int64,
	change func(secret.Read, map[string]string) (map[string]string, error),
) (secret.Version, error) {
	if err := s.keeper.Ready(ctx); err != nil {
		return secret.Version{}, err
	}
	if first, ok, err := s.engine.Replayed(ctx, c.record, path, c.caller.String()); err != nil || ok {
		return first, err
	}
	for range maxRewriteAttempts {
		r, data, err := s.read(ctx, path, version)
		if err != nil {
			return secret.Version{}, err
		}
		if userCAS != nil && *userCAS != r.Current {
			return secret.Version{}, fault.Wrap(fault.FailedPrecondition, secret.ErrCASConflict,
				"check-and-set failed: %s is at version %d, you expected %d", path, r.Current, *userCAS).Because(fault.CASMismatch)
		}
		data, err = change(r, data)
		if err != nil {
			return secret.Version{}, err
		}
		current := r.Current
		v, err := s.write(ctx, c, path, data, &current)
		if userCAS == nil && errors.Is(err, secret.ErrCASConflict) {
			continue
		}
		return v, err
	}
	return secret.Version{}, fault.New(fault.Aborted,
		"%s kept changing while this request tried to update it; try again", path)
}

func errCASRequired(path string, current int64) error {
	return fault.New(fault.FailedPrecondition,
		"check-and-set is required for %s: give the version you expect (it is at version %d)", path, current).Because(fault.CASRequired)
}

// write stores data as the next version of path.
func (s secretServer) write(ctx context.Context, c *call, path string, data map[string]string, cas *int64) (secret.Version, error) {
	if err := s.keeper.Ready(ctx); err != nil {
		return secret.Version{}, err
	}
	return s.engine.Put(ctx, c.record, path, c.caller.String(), data, cas)
}

// read returns a live version and its opened data.
func (s secretServer) read(ctx context.Context, path string, version int64) (secret.Read, map[string]string, error) {
	if err := s.keeper.Ready(ctx); err != nil {
		return secret.Read{}, nil, err
	}
	return s.engine.Read(ctx, path, version)
}
