package policy

import (
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Set is an immutable collection of policies that answers access questions.
// It is safe for concurrent use.
type Set struct {
	// policies are sorted by name.
	policies []Policy
	// byID indexes the policies whose SPIFFE ID pattern is one literal ID
	// by that ID, byStem those whose pattern's first path segment is
	// literal by their stem (see IDPattern), and wild lists the others;
	// each in name order. A question about id tries only byID[id],
	// byStem[its stem] and wild: with many workloads, each named in its
	// own policies, a check stays flat as policies are added
	// (docs/performance.md).
	byID, byStem map[string][]int
	wild         []int
}

// Grant is what one policy grants.
type Grant struct {
	Policy string
	Perms  Perm
}

// NewSet returns a Set of a copy of ps. Names are expected to be unique.
func NewSet(ps []Policy) *Set {
	sorted := slices.Clone(ps)
	slices.SortStableFunc(sorted, func(a, b Policy) int { return strings.Compare(a.Name, b.Name) })
	s := &Set{policies: sorted, byID: map[string][]int{}, byStem: map[string][]int{}}
	for i, p := range sorted {
		switch {
		case p.SPIFFEID.literal != "":
			s.byID[p.SPIFFEID.literal] = append(s.byID[p.SPIFFEID.literal], i)
		case p.SPIFFEID.stem != "":
			s.byStem[p.SPIFFEID.stem] = append(s.byStem[p.SPIFFEID.stem], i)
		default:
			s.wild = append(s.wild, i)
		}
	}
	return s
}

// forID calls fn, in name order, with each policy whose SPIFFE ID pattern
// may match id (only those can), until fn returns false.
func (s *Set) forID(id spiffeid.ID, fn func(p *Policy) bool) {
	lists := [3][]int{s.byID[id.String()], s.byStem[stemOf(id)], s.wild}
	for {
		// The list whose head comes first, each list in name order.
		var next *[]int
		for j := range lists {
			if l := &lists[j]; len(*l) > 0 && (next == nil || (*l)[0] < (*next)[0]) {
				next = l
			}
		}
		if next == nil {
			return
		}
		i := (*next)[0]
		*next = (*next)[1:]
		if !fn(&s.policies[i]) {
			return
		}
	}
}

// Allowed returns the permissions id has on path: the union of the
// permissions of the policies whose SPIFFE ID pattern matches id and whose
// path pattern matches path. An invalid path gets none.
func (s *Set) Allowed(id spiffeid.ID, path string) Perm {
	if !validPath(path) {
		return 0
	}
	var perms Perm
	s.forID(id, func(p *Policy) bool {
		if p.Perms&^perms != 0 && p.SPIFFEID.Match(id) && p.Path.glob.match(path) {
			perms |= p.Perms
		}
		return true
	})
	return perms
}

// Grants returns, sorted by policy name, what each policy that grants id
// something on path grants.
func (s *Set) Grants(id spiffeid.ID, path string) []Grant {
	if !validPath(path) {
		return nil
	}
	var grants []Grant
	s.forID(id, func(p *Policy) bool {
		if p.Perms != 0 && p.SPIFFEID.Match(id) && p.Path.glob.match(path) {
			grants = append(grants, Grant{Policy: p.Name, Perms: p.Perms})
		}
		return true
	})
	return grants
}

// MayList reports whether some policy grants id List on a path under dir,
// so that a filtered listing may show dir as a directory. dir is "" or a
// valid prefix ending with '/'.
func (s *Set) MayList(id spiffeid.ID, dir string) bool {
	if !validDir(dir) {
		return false
	}
	may := false
	s.forID(id, func(p *Policy) bool {
		may = p.Perms.Has(List) && p.SPIFFEID.Match(id) && p.Path.glob.mayMatchUnder(dir, secret.MaxPathLen)
		return !may
	})
	return may
}

// MayUnder reports whether some policy grants id perm on a path under
// dir ("" or a valid prefix ending with '/').
func (s *Set) MayUnder(id spiffeid.ID, dir string, perm Perm) bool {
	if !validDir(dir) {
		return false
	}
	may := false
	s.forID(id, func(p *Policy) bool {
		may = p.Perms.Has(perm) && p.SPIFFEID.Match(id) && p.Path.glob.mayMatchUnder(dir, secret.MaxPathLen)
		return !may
	})
	return may
}

// Len returns the number of policies in s.
func (s *Set) Len() int { return len(s.policies) }
