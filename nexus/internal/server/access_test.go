package server_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
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

	// A lifetime beyond the maximum is refused in duration terms, which a
	// --ttl flag speaks.
	_, err := s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password), TtlSeconds: 48 * 3600}))
	wantCode(t, err, connect.CodeInvalidArgument, "token lifetime 48h0m0s is out of range: at least 1s and at most")

	// An expired token. A 1s token lives a full second after it was
	// issued (its expiry is not truncated to the second), and is refused
	// once that second is over.
	before := time.Now()
	login, err := s.operatorWith(adminID, "").Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password), TtlSeconds: 1}))
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	expires := login.Msg.GetToken().GetExpiresAt().AsTime()
	if expires.Before(before.Add(time.Second)) || expires.After(after.Add(time.Second)) {
		t.Fatalf("a 1s token issued between %s and %s expires at %s: want 1s after issue",
			before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano), expires.Format(time.RFC3339Nano))
	}
	short := login.Msg.GetToken().GetToken()
	// Used at once it works; only a machine too slow to make the call
	// within that second may see it expired, and only then.
	if err := get(s.secretsWith(adminID, short)); err != nil && !(connect.CodeOf(err) == connect.CodeUnauthenticated && time.Now().After(expires)) {
		t.Fatalf("fresh short token: %v", err)
	}
	time.Sleep(time.Until(expires) + 10*time.Millisecond)
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
	evil := spiffeid.RequireFromPath(td, "/app/evil")
	other := spiffeid.RequireFromPath(td, "/app/other")
	getX := func(id spiffeid.ID) error {
		_, err := s.secrets(id).GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "apps/x"}))
		return err
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.db().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	wantInvalid := func(want ...string) {
		t.Helper()
		// The cache of this Nexus, reloaded by the change just made through it.
		if diff := cmp.Diff(want, s.policies.Invalid(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("invalid policies in the cache (-want +got):\n%s", diff)
		}
		list, err := s.policyClient().ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, list.Msg.GetInvalidPolicies(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("invalid policies listed (-want +got):\n%s", diff)
		}
	}
	// A legitimate change through the API makes this Nexus reload before it
	// answers: no waiting for notifications or polls.
	change := func(name string) {
		t.Helper()
		s.putPolicy(name, "spiffe://spike.local/app/nobody", "none/**", "read")
	}

	s.putPolicy("real", other.String(), "apps/**", "read")
	if err := getX(other); err != nil {
		t.Fatalf("read granted by the real policy: %v", err)
	}

	// A forged row, and a real row copied under another name.
	forged := fmt.Sprintf(`{"name":"forged","spiffe_id_pattern":%q,"path_pattern":"**","permissions":["read"]}`, evil)
	exec(`INSERT INTO policies (name, sealed) VALUES ('forged', convert_to($1, 'UTF8'))`, forged)
	exec(`INSERT INTO policies (name, sealed) SELECT 'copied', sealed FROM policies WHERE name = 'real'`)
	change("unrelated-1")
	wantInvalid("copied", "forged")
	wantCode(t, getX(evil), connect.CodePermissionDenied, "no policy grants")
	if err := getX(other); err != nil {
		t.Fatalf("read granted by the real policy next to forged ones: %v", err)
	}
	check, err := s.policyClient().CheckAccess(ctx, connect.NewRequest(&nexusv1.CheckAccessRequest{SpiffeId: evil.String(), Path: "apps/x"}))
	if err != nil || len(check.Msg.GetPermissions()) != 0 {
		t.Fatalf("check access for the forged policy's caller = %v, %v", check.Msg, err)
	}
	_, err = s.policyClient().GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: "forged"}))
	wantCode(t, err, connect.CodeDataLoss, "failed authentication")
	exec(`DELETE FROM policies WHERE name IN ('forged', 'copied')`)

	// A replay: the real policy's row, saved, deleted through the API and
	// put back with SQL. It is bound to its name and opens, but it is not
	// the row the policy manifest lists any more.
	var saved []byte
	if err := s.db().QueryRow(ctx, `SELECT sealed FROM policies WHERE name = 'real'`).Scan(&saved); err != nil {
		t.Fatal(err)
	}
	if _, err := s.policyClient().DeletePolicy(ctx, connect.NewRequest(&nexusv1.DeletePolicyRequest{Name: "real"})); err != nil {
		t.Fatal(err)
	}
	wantInvalid()
	wantCode(t, getX(other), connect.CodePermissionDenied, "no policy grants")
	exec(`INSERT INTO policies (name, sealed) VALUES ('real', $1)`, saved)
	change("unrelated-2")
	wantInvalid("real")
	wantCode(t, getX(other), connect.CodePermissionDenied, "no policy grants")
	check, err = s.policyClient().CheckAccess(ctx, connect.NewRequest(&nexusv1.CheckAccessRequest{SpiffeId: other.String(), Path: "apps/x"}))
	if err != nil || len(check.Msg.GetPermissions()) != 0 {
		t.Fatalf("check access for the replayed policy's caller = %v, %v", check.Msg, err)
	}
	_, err = s.policyClient().GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: "real"}))
	wantCode(t, err, connect.CodeDataLoss, "failed authentication")

	// An older version of a policy put back over the current one.
	s.putPolicy("real", other.String(), "apps/**", "read")
	if err := getX(other); err != nil {
		t.Fatalf("read granted by the policy put again: %v", err)
	}
	if err := s.db().QueryRow(ctx, `SELECT sealed FROM policies WHERE name = 'real'`).Scan(&saved); err != nil {
		t.Fatal(err)
	}
	s.putPolicy("real", other.String(), "apps/other/**", "read")
	exec(`UPDATE policies SET sealed = $1 WHERE name = 'real'`, saved)
	change("unrelated-3")
	wantInvalid("real")
	wantCode(t, getX(other), connect.CodePermissionDenied, "no policy grants")

	// A policy manifest put back from earlier: nothing grants (the
	// generation says it is stale) until the next change, which starts a
	// new manifest.
	var manifest []byte
	if err := s.db().QueryRow(ctx, `SELECT sealed FROM policy_manifest`).Scan(&manifest); err != nil {
		t.Fatal(err)
	}
	s.putPolicy("real", other.String(), "apps/**", "read")
	s.putPolicy("ops", other.String(), "apps/**", "read")
	exec(`UPDATE policy_manifest SET sealed = $1`, manifest)
	if err := s.policies.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	wantInvalid("ops", "real", "unrelated-1", "unrelated-2", "unrelated-3")
	wantCode(t, getX(other), connect.CodePermissionDenied, "no policy grants")
	s.putPolicy("real", other.String(), "apps/**", "read")
	wantInvalid("ops", "unrelated-1", "unrelated-2", "unrelated-3")
	if err := getX(other); err != nil {
		t.Fatalf("read granted by the policy put again: %v", err)
	}
}

// A policy deleted through one Nexus stops granting there at once, and
// the cache is fresh while its generation checks succeed.
func TestPolicyCacheFreshness(t *testing.T) {
	t.Parallel()
	s := newStackAs(t, "nexus_fresh")
	s.init()
	ctx := t.Context()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a fresh policy cache", func() bool { return s.policies.Fresh() == nil })
	// When Nexus cannot check the policy generation any more, the cache
	// turns stale within about two seconds.
	if _, err := s.db().Exec(ctx, `REVOKE SELECT ON policy_generation FROM nexus_fresh`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor("a stale policy cache", func() bool { return s.policies.Fresh() != nil })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the cache turned stale after %s, want about 2s", d)
	}
	err := s.policies.Fresh()
	if fault.CodeOf(err) != fault.Unavailable || !strings.Contains(err.Error(), "policy cache is stale") {
		t.Errorf("Fresh = %v, want Unavailable policy cache is stale", err)
	}
	if _, err := s.db().Exec(ctx, `GRANT SELECT ON policy_generation TO nexus_fresh`); err != nil {
		t.Fatal(err)
	}
	waitFor("a fresh policy cache again", func() bool { return s.policies.Fresh() == nil })
}

// Parallel logins with wrong passwords cannot all be tried before the
// first failure slows the caller down: one at a time reaches Keeper.
func TestParallelWrongPasswordsAreTriedOneAtATime(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	const n = 16
	codes := make([]connect.Code, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.operatorWith(adminID, "").Login(t.Context(), connect.NewRequest(&nexusv1.LoginRequest{Password: []byte("wrong password")}))
			codes[i] = connect.CodeOf(err)
		})
	}
	wg.Wait()
	tried := 0
	for _, c := range codes {
		switch c {
		case connect.CodeInvalidArgument:
			tried++
		case connect.CodeResourceExhausted:
		default:
			t.Errorf("wrong-password login: code %v", c)
		}
	}
	if tried != 1 {
		t.Errorf("%d of %d parallel wrong passwords were tried, want 1", tried, n)
	}
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
