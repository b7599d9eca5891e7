package policy_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

// randomPolicies are n policies over a few workloads, paths and trust
// domains, with literal and wildcard SPIFFE ID patterns mixed, and the IDs
// and paths to ask about.
func randomPolicies(t testing.TB, r *rand.Rand, n int) ([]policy.Policy, []spiffeid.ID, []string) {
	t.Helper()
	idPatterns := []string{"spiffe://example.org/app/web", "spiffe://example.org/app/api", "spiffe://example.org/app/*",
		"spiffe://example.org/app/**", "spiffe://example.org/batch/job-*", "spiffe://other.org/app/web",
		"spiffe://example.org/app/web/v2", "spiffe://example.org/ops", "spiffe://example.org/*/web",
		"spiffe://example.org/**", "spiffe://example.org/ops/**", "spiffe://example.org/app*/web"}
	pathPatterns := []string{"apps/web/*", "apps/**", "apps/*/db-*", "**", "batch/x", "apps/web/db-main"}
	perms := [][]string{{"read"}, {"write"}, {"list"}, {"read", "list"}, {"meta"}, {"delete"}}
	ps := make([]policy.Policy, n)
	for i := range ps {
		p, err := policy.New(fmt.Sprintf("p%05d", r.IntN(100000)*10+i%10), idPatterns[r.IntN(len(idPatterns))],
			pathPatterns[r.IntN(len(pathPatterns))], perms[r.IntN(len(perms))])
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	var ids []spiffeid.ID
	for _, s := range []string{"spiffe://example.org/app/web", "spiffe://example.org/app/api", "spiffe://example.org/app/web/v2",
		"spiffe://example.org/batch/job-7", "spiffe://other.org/app/web", "spiffe://example.org/ops", "spiffe://example.org/app/db",
		"spiffe://example.org/ops/x", "spiffe://example.org/application/web"} {
		ids = append(ids, spiffeid.RequireFromString(s))
	}
	return ps, ids, []string{"apps/web/x", "apps/web/db-main", "apps/api/db-1", "batch/x", "other"}
}

// A Set answers as if it tried every policy, in name order, whatever
// indexing it does: each question compared with a linear scan over random
// sets.
func TestSetIndexAnswersAsEveryPolicy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		ps, ids, paths := randomPolicies(t, r, 1+r.IntN(40))
		// Unique names, as the store guarantees.
		slices.SortFunc(ps, func(a, b policy.Policy) int { return strings.Compare(a.Name, b.Name) })
		ps = slices.CompactFunc(ps, func(a, b policy.Policy) bool { return a.Name == b.Name })
		set := policy.NewSet(ps)
		for _, id := range ids {
			for _, path := range paths {
				var want policy.Perm
				var grants []policy.Grant
				for _, p := range ps {
					if p.SPIFFEID.Match(id) && p.Path.Match(path) {
						want |= p.Perms
						grants = append(grants, policy.Grant{Policy: p.Name, Perms: p.Perms})
					}
				}
				if got := set.Allowed(id, path); got != want {
					t.Fatalf("round %d: Allowed(%s, %s) = %v, a scan of every policy gives %v", round, id, path, got, want)
				}
				if got := set.Grants(id, path); !slices.Equal(got, grants) {
					t.Fatalf("round %d: Grants(%s, %s) = %v, a scan of every policy gives %v", round, id, path, got, grants)
				}
			}
			for _, dir := range []string{"", "apps/", "apps/web/", "batch/", "none/"} {
				var mayList, mayRead bool
				for _, p := range ps {
					if p.SPIFFEID.Match(id) && p.Path.MayMatchUnder(dir) {
						mayList = mayList || p.Perms.Has(policy.List)
						mayRead = mayRead || p.Perms.Has(policy.Read)
					}
				}
				if got := set.MayList(id, dir); got != mayList {
					t.Fatalf("round %d: MayList(%s, %q) = %v, a scan gives %v", round, id, dir, got, mayList)
				}
				if got := set.MayUnder(id, dir, policy.Read); got != mayRead {
					t.Fatalf("round %d: MayUnder(%s, %q, read) = %v, a scan gives %v", round, id, dir, got, mayRead)
				}
			}
		}
	}
}

// BenchmarkAllowed is a workload's check among n policies, most of them
// naming other workloads (what a deployment with many workloads has), a
// few with wildcards.
func BenchmarkAllowed(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ps := make([]policy.Policy, 0, n)
			for i := range n {
				id := fmt.Sprintf("spiffe://example.org/app/w%05d", i)
				if i%100 == 0 {
					id = fmt.Sprintf("spiffe://example.org/team%d/**", i)
				}
				p, err := policy.New(fmt.Sprintf("p%05d", i), id, fmt.Sprintf("apps/w%05d/**", i), []string{"read"})
				if err != nil {
					b.Fatal(err)
				}
				ps = append(ps, p)
			}
			set := policy.NewSet(ps)
			w := n/2 + 1 // named by a literal policy
			id := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/app/w%05d", w))
			path := fmt.Sprintf("apps/w%05d/db", w)
			b.ReportAllocs()
			for b.Loop() {
				if !set.Allowed(id, path).Has(policy.Read) {
					b.Fatalf("%s may not read its own secret", id)
				}
			}
		})
	}
}
