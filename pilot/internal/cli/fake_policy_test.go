package cli

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// The SPIFFE IDs that the fake's CheckAccess knows.
const (
	webID   = "spiffe://spike.local/app/web"
	otherID = "spiffe://spike.local/app/other"
)

// demoPolicies are the policies the fake holds before any put.
func demoPolicies() map[string]*nexusv1.Policy {
	return map[string]*nexusv1.Policy{
		"web-read": {
			Name: "web-read", SpiffeIdPattern: webID, PathPattern: "apps/web/**", Permissions: []string{"read", "list"},
			CreatedAt: created, UpdatedAt: updated, UpdatedBy: pilotID,
		},
		"ci": {
			Name: "ci", SpiffeIdPattern: "spiffe://spike.local/ci/*", PathPattern: "apps/*/deploy", Permissions: []string{"read"},
			CreatedAt: created, UpdatedAt: created, UpdatedBy: pilotID,
		},
	}
}

// policy returns the stored policy name; the caller holds f.mu.
func (f *fakeNexus) policy(name string) (*nexusv1.Policy, bool) {
	if f.policies == nil {
		f.policies = demoPolicies()
	}
	p, ok := f.policies[name]
	return p, ok
}

func (f *fakeNexus) PutPolicy(_ context.Context, req *connect.Request[nexusv1.PutPolicyRequest]) (*connect.Response[nexusv1.PutPolicyResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := proto.CloneOf(req.Msg.GetPolicy())
	p.CreatedAt, p.UpdatedAt, p.UpdatedBy = created, created, pilotID
	if old, ok := f.policy(p.GetName()); ok {
		p.CreatedAt, p.UpdatedAt = old.GetCreatedAt(), updated
	}
	f.policies[p.GetName()] = p
	return connect.NewResponse(&nexusv1.PutPolicyResponse{Policy: p}), nil
}

func (f *fakeNexus) GetPolicy(_ context.Context, req *connect.Request[nexusv1.GetPolicyRequest]) (*connect.Response[nexusv1.GetPolicyResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.policy(req.Msg.GetName())
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("policy "+req.Msg.GetName()+" not found"))
	}
	return connect.NewResponse(&nexusv1.GetPolicyResponse{Policy: p}), nil
}

func (f *fakeNexus) ListPolicies(_ context.Context, req *connect.Request[nexusv1.ListPoliciesRequest]) (*connect.Response[nexusv1.ListPoliciesResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policy("")
	resp := &nexusv1.ListPoliciesResponse{InvalidPolicies: f.invalid}
	for _, name := range slices.Sorted(maps.Keys(f.policies)) {
		resp.Policies = append(resp.Policies, f.policies[name])
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeNexus) DeletePolicy(_ context.Context, req *connect.Request[nexusv1.DeletePolicyRequest]) (*connect.Response[nexusv1.DeletePolicyResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.policy(req.Msg.GetName()); !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("policy "+req.Msg.GetName()+" not found"))
	}
	delete(f.policies, req.Msg.GetName())
	return connect.NewResponse(&nexusv1.DeletePolicyResponse{}), nil
}

// CheckAccess knows three callers: Pilot (an admin), webID (granted by two
// policies below apps/web/) and everyone else (no access).
func (f *fakeNexus) CheckAccess(_ context.Context, req *connect.Request[nexusv1.CheckAccessRequest]) (*connect.Response[nexusv1.CheckAccessResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	switch id := req.Msg.GetSpiffeId(); {
	case id == pilotID:
		return connect.NewResponse(&nexusv1.CheckAccessResponse{Admin: true}), nil
	case id == webID && strings.HasPrefix(req.Msg.GetPath(), "apps/web/"):
		return connect.NewResponse(&nexusv1.CheckAccessResponse{
			Permissions: []string{"read", "list"},
			Grants: []*nexusv1.Grant{
				{Policy: "web-read", Permissions: []string{"read", "list"}},
				{Policy: "web-list", Permissions: []string{"list"}},
			},
		}), nil
	default:
		return connect.NewResponse(&nexusv1.CheckAccessResponse{}), nil
	}
}
