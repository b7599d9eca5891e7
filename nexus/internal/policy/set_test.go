package policy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

// testSet has overlapping policies whose permissions add up.
func testSet(t *testing.T) *policy.Set {
	t.Helper()
	var ps []policy.Policy
	for _, p := range []struct {
		name, id, path string
		perms          []string
	}{
		// Listed out of order: the Set sorts by name.
		{"web-write", "spiffe://example.org/app/web", "apps/web/*", []string{"write"}},
		{"apps-read", "spiffe://example.org/app/*", "apps/**", []string{"read"}},
		{"web-list", "spiffe://example.org/app/web", "apps/web/**", []string{"list", "read"}},
		{"db-meta", "spiffe://example.org/app/**", "apps/*/db-*", []string{"meta"}},
		{"ops", "spiffe://example.org/ops", "**", []string{"list"}},
		{"other-td", "spiffe://other.org/app/web", "**", []string{"destroy"}},
	} {
		pol, err := policy.New(p.name, p.id, p.path, p.perms)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pol)
	}
	return policy.NewSet(ps)
}

var (
	web    = spiffeid.RequireFromString("spiffe://example.org/app/web")
	api    = spiffeid.RequireFromString("spiffe://example.org/app/api")
	webV2  = spiffeid.RequireFromString("spiffe://example.org/app/web/v2")
	ops    = spiffeid.RequireFromString("spiffe://example.org/ops")
	nobody = spiffeid.RequireFromString("spiffe://example.org/nobody")
	otherW = spiffeid.RequireFromString("spiffe://other.org/app/web")
	rootID = spiffeid.RequireFromString("spiffe://example.org")
)

func TestSetAllowedAndGrants(t *testing.T) {
	t.Parallel()
	s := testSet(t)
	if got := s.Len(); got != 6 {
		t.Errorf("Len() = %d, want 6", got)
	}
	tests := []struct {
		name   string
		id     spiffeid.ID
		path   string
		want   policy.Perm
		grants []policy.Grant
	}{
		{"web on its secret: three policies add up", web, "apps/web/token", policy.Read | policy.List | policy.Write,
			[]policy.Grant{{"apps-read", policy.Read}, {"web-list", policy.Read | policy.List}, {"web-write", policy.Write}}},
		{"web on a db secret: four policies", web, "apps/web/db-main", policy.Read | policy.List | policy.Write | policy.Meta,
			[]policy.Grant{
				{"apps-read", policy.Read}, {"db-meta", policy.Meta},
				{"web-list", policy.Read | policy.List}, {"web-write", policy.Write},
			}},
		{"web deeper: no write", web, "apps/web/a/b", policy.Read | policy.List,
			[]policy.Grant{{"apps-read", policy.Read}, {"web-list", policy.Read | policy.List}}},
		{"web on the directory path itself", web, "apps/web", policy.Read | policy.List,
			[]policy.Grant{{"apps-read", policy.Read}, {"web-list", policy.Read | policy.List}}},
		{"web on a sibling: no substring match", web, "apps/web2/token", policy.Read,
			[]policy.Grant{{"apps-read", policy.Read}}},
		{"web outside apps", web, "infra/db", 0, nil},
		{"api", api, "apps/web/token", policy.Read, []policy.Grant{{"apps-read", policy.Read}}},
		{"api on a db secret", api, "apps/api/db-x", policy.Read | policy.Meta,
			[]policy.Grant{{"apps-read", policy.Read}, {"db-meta", policy.Meta}}},
		{"nested ID: * is one segment, ** is many", webV2, "apps/api/db-x", policy.Meta,
			[]policy.Grant{{"db-meta", policy.Meta}}},
		{"ops lists everything", ops, "infra/db", policy.List, []policy.Grant{{"ops", policy.List}}},
		{"nobody", nobody, "apps/web/token", 0, nil},
		{"other trust domain", otherW, "apps/web/token", policy.Destroy, []policy.Grant{{"other-td", policy.Destroy}}},
		{"trust domain ID", rootID, "apps/web/token", 0, nil},
		{"zero ID", spiffeid.ID{}, "apps/web/token", 0, nil},
		{"invalid path", web, "apps/web/../../infra/db", 0, nil},
		{"trailing slash", web, "apps/web/token/", 0, nil},
		{"empty path", ops, "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := s.Allowed(tt.id, tt.path); got != tt.want {
				t.Errorf("Allowed(%v, %q) = %v, want %v", tt.id, tt.path, got, tt.want)
			}
			if diff := cmp.Diff(tt.grants, s.Grants(tt.id, tt.path)); diff != "" {
				t.Errorf("Grants(%v, %q) mismatch (-want +got):\n%s", tt.id, tt.path, diff)
			}
		})
	}
}

func TestSetMayList(t *testing.T) {
	t.Parallel()
	s := testSet(t)
	tests := []struct {
		id   spiffeid.ID
		dir  string
		want bool
	}{
		{web, "", true},
		{web, "apps/", true},
		{web, "apps/web/", true},
		{web, "apps/web/a/", true},
		{web, "apps/api/", false}, // apps-read grants read only
		{web, "infra/", false},
		{web, "apps", false}, // not a directory
		{web, "apps//", false},
		{api, "", false}, // no List anywhere
		{ops, "", true},
		{ops, "infra/x/", true},
		{nobody, "", false},
		{otherW, "", false}, // destroy only
		{rootID, "", false},
	}
	for _, tt := range tests {
		if got := s.MayList(tt.id, tt.dir); got != tt.want {
			t.Errorf("MayList(%v, %q) = %v, want %v", tt.id, tt.dir, got, tt.want)
		}
	}
}

func TestEmptySet(t *testing.T) {
	t.Parallel()
	s := policy.NewSet(nil)
	if s.Len() != 0 || s.Allowed(web, "apps/web/x") != 0 || s.Grants(web, "apps/web/x") != nil || s.MayList(web, "") {
		t.Error("empty Set grants something")
	}
}

func TestNewSetCopies(t *testing.T) {
	t.Parallel()
	p, err := policy.New("a", "spiffe://example.org/app/web", "**", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	ps := []policy.Policy{p}
	s := policy.NewSet(ps)
	ps[0].Perms = policy.All
	if got := s.Allowed(web, "x"); got != policy.Read {
		t.Errorf("Allowed after changing the caller's slice = %v, want read", got)
	}
}
