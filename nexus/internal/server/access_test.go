package server_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

func (s *stack) putPolicy(name, id, path string, perms ...string) {
	s.t.Helper()
	_, err := s.policyClient().PutPolicy(s.t.Context(), connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: &nexusv1.Policy{
		Name: name, SpiffeIdPattern: id, PathPattern: path, Permissions: perms,
	}}))
	if err != nil {
		s.t.Fatalf("put policy %s: %v", name, err)
	}
}

// The allow/deny matrix: callers × paths × operations, through the real
// RPC stack. The expectations are written out by hand, not computed by the
// matcher under test.
func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	paths := []string{"apps/web/db", "apps/web/config", "apps/web2/db", "apps/other/db", "apps/webx"}
	for _, p := range paths {
		for range 3 {
			s.put(p, map[string]string{"k": "v"})
		}
	}
	s.putPolicy("web-read", "spiffe://spike.local/app/web", "apps/web/**", "read", "list")
	s.putPolicy("web-write", "spiffe://spike.local/app/web", "apps/web/config", "write")
	s.putPolicy("batch", "spiffe://spike.local/batch/*", "apps/*/db", "read")
	s.putPolicy("ops", "spiffe://spike.local/ops", "apps/**", "delete", "meta")

	callers := map[string]spiffeid.ID{
		"web":     spiffeid.RequireFromPath(td, "/app/web"),
		"web2":    spiffeid.RequireFromPath(td, "/app/web2"),
		"batch-a": spiffeid.RequireFromPath(td, "/batch/a"),
		"batch-n": spiffeid.RequireFromPath(td, "/batch/a/b"),
		"ops":     spiffeid.RequireFromPath(td, "/ops"),
	}
	allowed := map[string]bool{}
	for _, cell := range []string{
		"web read apps/web/db", "web read apps/web/config", "web write apps/web/config",
		"batch-a read apps/web/db", "batch-a read apps/web2/db", "batch-a read apps/other/db",
	} {
		allowed[cell] = true
	}
	for _, p := range paths {
		allowed["ops delete "+p] = true
		allowed["ops meta "+p] = true
	}

	ops := map[string]func(c nexusv1connectSecretClient, path string) error{
		"read": func(c nexusv1connectSecretClient, path string) error {
			_, err := c.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: path, Version: 1}))
			return err
		},
		"write": func(c nexusv1connectSecretClient, path string) error {
			_, err := c.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"k": "w"}}))
			return err
		},
		"delete": func(c nexusv1connectSecretClient, path string) error {
			_, err := c.DeleteSecret(t.Context(), connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: path, Versions: []int64{3}}))
			return err
		},
		"destroy": func(c nexusv1connectSecretClient, path string) error {
			_, err := c.DestroySecret(t.Context(), connect.NewRequest(&nexusv1.DestroySecretRequest{Path: path, Versions: []int64{2}}))
			return err
		},
		"meta": func(c nexusv1connectSecretClient, path string) error {
			_, err := c.GetSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: path}))
			return err
		},
	}
	var opNames []string
	for op := range ops {
		opNames = append(opNames, op)
	}
	sort.Strings(opNames)
	for name, id := range callers {
		c := s.secrets(id)
		for _, op := range opNames {
			for _, path := range paths {
				cell := name + " " + op + " " + path
				err := ops[op](c, path)
				denied := connect.CodeOf(err) == connect.CodePermissionDenied
				if denied == allowed[cell] {
					t.Errorf("%s: error %v, want allowed=%v", cell, err, allowed[cell])
				}
				if allowed[cell] && err != nil && op != "read" {
					t.Errorf("%s: allowed but failed: %v", cell, err)
				}
			}
		}
	}
}

type nexusv1connectSecretClient = interface {
	GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error)
	PutSecret(ctx context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error)
	DeleteSecret(ctx context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error)
	DestroySecret(ctx context.Context, req *connect.Request[nexusv1.DestroySecretRequest]) (*connect.Response[nexusv1.DestroySecretResponse], error)
	GetSecretMetadata(ctx context.Context, req *connect.Request[nexusv1.GetSecretMetadataRequest]) (*connect.Response[nexusv1.GetSecretMetadataResponse], error)
}

func TestListShowsOnlyWhatTheCallerMayList(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	for _, p := range []string{"apps/web/db", "apps/web/cache/redis", "apps/pay/db", "apps/top", "other/x"} {
		s.put(p, map[string]string{"k": "v"})
	}
	s.putPolicy("web", "spiffe://spike.local/app/web", "apps/web/**", "read", "list")
	web := s.secrets(spiffeid.RequireFromPath(td, "/app/web"))
	list := func(prefix string, recursive bool) ([]string, error) {
		resp, err := web.ListSecrets(t.Context(), connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: prefix, Recursive: recursive}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetPaths(), nil
	}
	for _, tt := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"", false, []string{"apps/"}},
		{"apps/", false, []string{"apps/web/"}},
		{"apps/web/", false, []string{"apps/web/cache/", "apps/web/db"}},
		{"apps/", true, []string{"apps/web/cache/redis", "apps/web/db"}},
	} {
		got, err := list(tt.prefix, tt.recursive)
		if err != nil {
			t.Fatalf("list %q: %v", tt.prefix, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("list %q recursive=%v (-want +got):\n%s", tt.prefix, tt.recursive, diff)
		}
	}
	_, err := list("other/", false)
	wantCode(t, err, connect.CodePermissionDenied, "may not list")
	nobody := s.secrets(spiffeid.RequireFromPath(td, "/app/nobody"))
	_, err = nobody.ListSecrets(t.Context(), connect.NewRequest(&nexusv1.ListSecretsRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, "may not list")
}

func TestAdminCredentials(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/x", map[string]string{"k": "v"})
	ctx := t.Context()
	workload := spiffeid.RequireFromPath(td, "/app/web")
	get := func(c interface {
		GetSecret(context.Context, *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error)
	}) error {
		_, err := c.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
		return err
	}

	// An admin SVID without a token.
	wantCode(t, get(s.secretsWith(adminID, "")), connect.CodeUnauthenticated, "admin token required: run `spike login`")
	// A valid admin token from a workload SVID.
	wantCode(t, get(s.secretsWith(workload, s.token)), connect.CodePermissionDenied, "is not an admin SPIFFE ID: an admin token is accepted only together with an admin SVID")
	// A made-up token.
	wantCode(t, get(s.secretsWith(adminID, "spike_at_forged")), connect.CodeUnauthenticated, "admin token is unknown")

	// An expired token.
	login, err := s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password), TtlSeconds: 1}))
	if err != nil {
		t.Fatal(err)
	}
	short := login.Msg.GetToken().GetToken()
	if err := get(s.secretsWith(adminID, short)); err != nil {
		t.Fatalf("fresh short token: %v", err)
	}
	time.Sleep(time.Until(login.Msg.GetToken().GetExpiresAt().AsTime()) + 50*time.Millisecond)
	wantCode(t, get(s.secretsWith(adminID, short)), connect.CodeUnauthenticated, "admin token expired at")

	// A revoked token.
	login, err = s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password)}))
	if err != nil {
		t.Fatal(err)
	}
	tok := login.Msg.GetToken().GetToken()
	if _, err := s.operatorWith(adminID, tok).Logout(ctx, connect.NewRequest(&nexusv1.LogoutRequest{})); err != nil {
		t.Fatal(err)
	}
	wantCode(t, get(s.secretsWith(adminID, tok)), connect.CodeUnauthenticated, "admin token was revoked")
	// Clearing the revocation in the database does not bring it back: the
	// sealed details say revoked too.
	if _, err := s.db().Exec(ctx, `UPDATE admin_tokens SET revoked_at = NULL`); err != nil {
		t.Fatal(err)
	}
	wantCode(t, get(s.secretsWith(adminID, tok)), connect.CodeUnauthenticated, "admin token was revoked")

	// The token from init still works, and logins with a wrong password
	// are refused and slowed.
	if err := get(s.secretsWith(adminID, s.token)); err != nil {
		t.Fatalf("init token: %v", err)
	}
	_, err = s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte("wrong password")}))
	wantCode(t, err, connect.CodeInvalidArgument, "wrong password")
	_, err = s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeResourceExhausted, "try again in")

	// No token is stored in the clear.
	var n int
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM admin_tokens WHERE position(convert_to($1, 'UTF8') in sealed) > 0 OR position(convert_to($1, 'UTF8') in lookup) > 0`, s.token).Scan(&n); err != nil || n != 0 {
		t.Fatalf("token found in the clear in %d rows (%v)", n, err)
	}
	// Policy administration needs the token too.
	_, err = nexusPolicyClientWith(s, "").ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "admin token required")
	_, err = nexusPolicyClientAs(s, workload).ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, "not an admin SPIFFE ID")
}

func TestPolicyInsertedBySQLGrantsNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/x", map[string]string{"k": "v"})
	ctx := t.Context()
	workload := spiffeid.RequireFromPath(td, "/app/evil")
	s.putPolicy("real", "spiffe://spike.local/app/other", "apps/**", "read")

	// A forged row, and a real row copied under another name.
	forged := fmt.Sprintf(`{"name":"forged","spiffe_id_pattern":%q,"path_pattern":"**","permissions":["read"]}`, workload)
	if _, err := s.db().Exec(ctx, `INSERT INTO policies (name, sealed) VALUES ('forged', convert_to($1, 'UTF8'))`, forged); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db().Exec(ctx, `INSERT INTO policies (name, sealed) SELECT 'copied', sealed FROM policies WHERE name = 'real'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db().Exec(ctx, `UPDATE policy_generation SET generation = generation + 1; NOTIFY spike_policies`); err != nil {
		t.Fatal(err)
	}
	list, err := s.policyClient().ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"copied", "forged"}, list.Msg.GetInvalidPolicies()); diff != "" {
		t.Errorf("invalid policies reported (-want +got):\n%s", diff)
	}
	if len(list.Msg.GetPolicies()) != 1 || list.Msg.GetPolicies()[0].GetName() != "real" {
		t.Errorf("valid policies = %v", list.Msg.GetPolicies())
	}
	// Give the cache time to reload, then check nothing is granted.
	time.Sleep(300 * time.Millisecond)
	_, err = s.secrets(workload).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
	wantCode(t, err, connect.CodePermissionDenied, "no policy grants")
	check, err := s.policyClient().CheckAccess(ctx, connect.NewRequest(&nexusv1.CheckAccessRequest{SpiffeId: workload.String(), Path: "apps/x"}))
	if err != nil || len(check.Msg.GetPermissions()) != 0 {
		t.Fatalf("check access for the forged policy's caller = %v, %v", check.Msg, err)
	}
	_, err = s.policyClient().GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: "forged"}))
	wantCode(t, err, connect.CodeDataLoss, "failed authentication")
}

func TestPolicyAdministration(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	pc := s.policyClient()
	s.putPolicy("web", "spiffe://spike.local/app/web", "apps/web/**", "read", "LIST")
	got, err := pc.GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: "web"}))
	if err != nil {
		t.Fatal(err)
	}
	p := got.Msg.GetPolicy()
	if p.GetSpiffeIdPattern() != "spiffe://spike.local/app/web" || p.GetPathPattern() != "apps/web/**" ||
		!cmp.Equal([]string{"read", "list"}, p.GetPermissions()) || p.GetUpdatedBy() != adminID.String() {
		t.Errorf("policy = %v", p)
	}
	check, err := pc.CheckAccess(ctx, connect.NewRequest(&nexusv1.CheckAccessRequest{SpiffeId: "spiffe://spike.local/app/web", Path: "apps/web/db"}))
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal([]string{"read", "list"}, check.Msg.GetPermissions()) || len(check.Msg.GetGrants()) != 1 || check.Msg.GetGrants()[0].GetPolicy() != "web" {
		t.Errorf("check = %v", check.Msg)
	}
	for _, bad := range []struct {
		policy *nexusv1.Policy
		field  string
	}{
		{&nexusv1.Policy{Name: "x", SpiffeIdPattern: "spiffe://spike.local/a", PathPattern: "apps/**", Permissions: []string{"fly"}}, "permissions"},
		{&nexusv1.Policy{Name: "x", SpiffeIdPattern: "spiffe://spike.local/a", PathPattern: "apps/a**", Permissions: []string{"read"}}, "path_pattern"},
		{&nexusv1.Policy{Name: "x", SpiffeIdPattern: "spiffe://*/a", PathPattern: "apps/**", Permissions: []string{"read"}}, "spiffe_id_pattern"},
		{&nexusv1.Policy{Name: "bad name", SpiffeIdPattern: "spiffe://spike.local/a", PathPattern: "apps/**", Permissions: []string{"read"}}, "name"},
	} {
		_, err := pc.PutPolicy(ctx, connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: bad.policy}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.HasPrefix(errMessage(err), bad.field+":") {
			t.Errorf("policy %v: error %v, want InvalidArgument naming %s", bad.policy, err, bad.field)
		}
	}
	if _, err := pc.DeletePolicy(ctx, connect.NewRequest(&nexusv1.DeletePolicyRequest{Name: "web"})); err != nil {
		t.Fatal(err)
	}
	_, err = pc.GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: "web"}))
	wantCode(t, err, connect.CodeNotFound, "policy web not found")
	_, err = s.secrets(spiffeid.RequireFromPath(td, "/app/web")).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/web/db"}))
	wantCode(t, err, connect.CodePermissionDenied, "no policy grants")
}

func nexusPolicyClientWith(s *stack, token string) nexusv1connect.PolicyServiceClient {
	return nexusv1connect.NewPolicyServiceClient(s.httpClient(adminID), s.url, withToken(token))
}

func nexusPolicyClientAs(s *stack, id spiffeid.ID) nexusv1connect.PolicyServiceClient {
	return nexusv1connect.NewPolicyServiceClient(s.httpClient(id), s.url, withToken(s.token))
}
