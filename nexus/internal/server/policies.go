package server

import (
	"context"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// policyServer implements nexusv1connect.PolicyServiceHandler.
type policyServer struct{ *Server }

// PutPolicy validates, seals and stores a policy, and records it in the
// policy manifest. Every replica's cache picks the change up; this one's at
// once.
func (p policyServer) PutPolicy(ctx context.Context, req *connect.Request[nexusv1.PutPolicyRequest]) (*connect.Response[nexusv1.PutPolicyResponse], error) {
	return unary(ctx, p.Server, req, p.putPolicy)
}

func (p policyServer) putPolicy(ctx context.Context, c *call, m *nexusv1.PutPolicyRequest) (*nexusv1.PutPolicyResponse, error) {
	in := m.GetPolicy()
	if in == nil {
		return nil, fault.New(fault.Invalid, "policy: required")
	}
	compiled, err := policy.New(in.GetName(), in.GetSpiffeIdPattern(), in.GetPathPattern(), in.GetPermissions())
	if err != nil {
		return nil, err
	}
	if err := p.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	sp := access.StoredPolicy{
		Name:            compiled.Name,
		SPIFFEIDPattern: compiled.SPIFFEID.String(),
		PathPattern:     compiled.Path.String(),
		Permissions:     compiled.Perms.Names(),
		UpdatedBy:       c.caller.String(),
	}
	row, err := p.policies.Put(ctx, c.record, sp)
	if err != nil {
		return nil, err
	}
	p.reloadPolicies(ctx)
	return &nexusv1.PutPolicyResponse{Policy: policyMessage(sp, row)}, nil
}

// GetPolicy returns one policy.
func (p policyServer) GetPolicy(ctx context.Context, req *connect.Request[nexusv1.GetPolicyRequest]) (*connect.Response[nexusv1.GetPolicyResponse], error) {
	return unary(ctx, p.Server, req, p.getPolicy)
}

func (p policyServer) getPolicy(ctx context.Context, c *call, m *nexusv1.GetPolicyRequest) (*nexusv1.GetPolicyResponse, error) {
	name := m.GetName()
	if err := policy.ValidateName(name); err != nil {
		return nil, err
	}
	if err := p.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	o, err := p.policies.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return &nexusv1.GetPolicyResponse{Policy: policyMessage(o.StoredPolicy, o.Row)}, nil
}

// ListPolicies returns every policy that passes authentication (its row
// opens and the policy manifest lists it), and names those that don't.
func (p policyServer) ListPolicies(ctx context.Context, req *connect.Request[nexusv1.ListPoliciesRequest]) (*connect.Response[nexusv1.ListPoliciesResponse], error) {
	return unary(ctx, p.Server, req, p.listPolicies)
}

func (p policyServer) listPolicies(ctx context.Context, c *call, _ *nexusv1.ListPoliciesRequest) (*nexusv1.ListPoliciesResponse, error) {
	if err := p.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	snap, err := p.policies.Read(ctx)
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.ListPoliciesResponse{}
	for _, o := range snap.Valid {
		resp.Policies = append(resp.Policies, policyMessage(o.StoredPolicy, o.Row))
	}
	for _, r := range snap.Invalid {
		resp.InvalidPolicies = append(resp.InvalidPolicies, r.Name)
	}
	return resp, nil
}

// DeletePolicy removes a policy and its entry in the policy manifest.
func (p policyServer) DeletePolicy(ctx context.Context, req *connect.Request[nexusv1.DeletePolicyRequest]) (*connect.Response[nexusv1.DeletePolicyResponse], error) {
	return unary(ctx, p.Server, req, p.deletePolicy)
}

func (p policyServer) deletePolicy(ctx context.Context, c *call, m *nexusv1.DeletePolicyRequest) (*nexusv1.DeletePolicyResponse, error) {
	name := m.GetName()
	if err := policy.ValidateName(name); err != nil {
		return nil, err
	}
	if err := p.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	if err := p.policies.Delete(ctx, c.record, name); err != nil {
		return nil, err
	}
	p.reloadPolicies(ctx)
	return &nexusv1.DeletePolicyResponse{}, nil
}

// CheckAccess explains what a caller could do on a path.
func (p policyServer) CheckAccess(ctx context.Context, req *connect.Request[nexusv1.CheckAccessRequest]) (*connect.Response[nexusv1.CheckAccessResponse], error) {
	return unary(ctx, p.Server, req, p.checkAccess)
}

func (p policyServer) checkAccess(ctx context.Context, c *call, m *nexusv1.CheckAccessRequest) (*nexusv1.CheckAccessResponse, error) {
	id, err := spiffeid.FromString(m.GetSpiffeId())
	if err != nil {
		return nil, fault.New(fault.Invalid, "spiffe_id: %v", err)
	}
	if err := secret.ValidatePath(m.GetPath()); err != nil {
		return nil, err
	}
	if err := p.keeper.Ready(ctx); err != nil {
		return nil, err
	}
	set := p.policies.Set()
	resp := &nexusv1.CheckAccessResponse{
		Permissions: set.Allowed(id, m.GetPath()).Names(),
		Admin:       p.admins[id],
	}
	for _, g := range set.Grants(id, m.GetPath()) {
		resp.Grants = append(resp.Grants, &nexusv1.Grant{Policy: g.Policy, Permissions: g.Perms.Names()})
	}
	return resp, nil
}

// reloadPolicies refreshes this replica's cache after a change it made, so
// the caller's next request already sees it.
func (p policyServer) reloadPolicies(ctx context.Context) {
	if err := p.policies.Reload(ctx); err != nil {
		p.log.Warn("reload policies after a change", "error", err.Error())
	}
}

func policyMessage(sp access.StoredPolicy, row policy.Record) *nexusv1.Policy {
	return &nexusv1.Policy{
		Name:            sp.Name,
		SpiffeIdPattern: sp.SPIFFEIDPattern,
		PathPattern:     sp.PathPattern,
		Permissions:     sp.Permissions,
		CreatedAt:       timestamppb.New(row.CreatedAt),
		UpdatedAt:       timestamppb.New(row.UpdatedAt),
		UpdatedBy:       sp.UpdatedBy,
	}
}
