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
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// policies implements nexusv1connect.PolicyServiceHandler.
type policies struct{ *Server }

// PutPolicy validates, seals and stores a policy, and records it in the
// policy manifest. Every replica's cache picks the change up; this one's at
// once.
func (p policies) PutPolicy(ctx context.Context, req *connect.Request[nexusv1.PutPolicyRequest]) (*connect.Response[nexusv1.PutPolicyResponse], error) {
	in := req.Msg.GetPolicy()
	if in == nil {
		return nil, fault.New(fault.Invalid, "policy: required")
	}
	compiled, err := policy.New(in.GetName(), in.GetSpiffeIdPattern(), in.GetPathPattern(), in.GetPermissions())
	if err != nil {
		return nil, err
	}
	if err := p.keys.Ready(ctx); err != nil {
		return nil, err
	}
	sp := access.StoredPolicy{
		Name:            compiled.Name,
		SPIFFEIDPattern: compiled.SPIFFEID.String(),
		PathPattern:     compiled.Path.String(),
		Permissions:     compiled.Perms.Names(),
		UpdatedBy:       principalFrom(ctx).id.String(),
	}
	row, err := p.policies.Put(ctx, sp)
	if err != nil {
		return nil, err
	}
	p.reloadPolicies(ctx)
	return connect.NewResponse(&nexusv1.PutPolicyResponse{Policy: policyMessage(sp, row)}), nil
}

// GetPolicy returns one policy.
func (p policies) GetPolicy(ctx context.Context, req *connect.Request[nexusv1.GetPolicyRequest]) (*connect.Response[nexusv1.GetPolicyResponse], error) {
	name := req.Msg.GetName()
	if err := policy.ValidateName(name); err != nil {
		return nil, err
	}
	if err := p.keys.Ready(ctx); err != nil {
		return nil, err
	}
	o, err := p.policies.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.GetPolicyResponse{Policy: policyMessage(o.StoredPolicy, o.Row)}), nil
}

// ListPolicies returns every policy that passes authentication (its row
// opens and the policy manifest lists it), and names those that don't.
func (p policies) ListPolicies(ctx context.Context, _ *connect.Request[nexusv1.ListPoliciesRequest]) (*connect.Response[nexusv1.ListPoliciesResponse], error) {
	if err := p.keys.Ready(ctx); err != nil {
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
	return connect.NewResponse(resp), nil
}

// DeletePolicy removes a policy and its entry in the policy manifest.
func (p policies) DeletePolicy(ctx context.Context, req *connect.Request[nexusv1.DeletePolicyRequest]) (*connect.Response[nexusv1.DeletePolicyResponse], error) {
	name := req.Msg.GetName()
	if err := policy.ValidateName(name); err != nil {
		return nil, err
	}
	if err := p.keys.Ready(ctx); err != nil {
		return nil, err
	}
	if err := p.policies.Delete(ctx, name); err != nil {
		return nil, err
	}
	p.reloadPolicies(ctx)
	return connect.NewResponse(&nexusv1.DeletePolicyResponse{}), nil
}

// CheckAccess explains what a caller could do on a path.
func (p policies) CheckAccess(ctx context.Context, req *connect.Request[nexusv1.CheckAccessRequest]) (*connect.Response[nexusv1.CheckAccessResponse], error) {
	id, err := spiffeid.FromString(req.Msg.GetSpiffeId())
	if err != nil {
		return nil, fault.New(fault.Invalid, "spiffe_id: %v", err)
	}
	if err := secret.ValidatePath(req.Msg.GetPath()); err != nil {
		return nil, err
	}
	if err := p.keys.Ready(ctx); err != nil {
		return nil, err
	}
	set := p.policies.Set()
	resp := &nexusv1.CheckAccessResponse{
		Permissions: set.Allowed(id, req.Msg.GetPath()).Names(),
		Admin:       p.admins[id],
	}
	for _, g := range set.Grants(id, req.Msg.GetPath()) {
		resp.Grants = append(resp.Grants, &nexusv1.Grant{Policy: g.Policy, Permissions: g.Perms.Names()})
	}
	return connect.NewResponse(resp), nil
}

// reloadPolicies refreshes this replica's cache after a change it made, so
// the caller's next request already sees it.
func (p policies) reloadPolicies(ctx context.Context) {
	if err := p.policies.Reload(ctx); err != nil {
		p.log.Warn("reload policies after a change", "error", err.Error())
	}
}

func policyMessage(sp access.StoredPolicy, row postgres.PolicyRow) *nexusv1.Policy {
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
