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
	return &Set{policies: sorted}
}

// Allowed returns the permissions id has on path: the union of the
// permissions of the policies whose SPIFFE ID pattern matches id and whose
// path pattern matches path. An invalid path gets none.
func (s *Set) Allowed(id spiffeid.ID, path string) Perm {
	if !validPath(path) {
		return 0
	}
	var perms Perm
	for _, p := range s.policies {
		if p.Perms&^perms != 0 && p.SPIFFEID.Match(id) && p.Path.glob.match(path) {
			perms |= p.Perms
		}
	}
	return perms
}

// Grants returns, sorted by policy name, what each policy that grants id
// something on path grants.
func (s *Set) Grants(id spiffeid.ID, path string) []Grant {
	if !validPath(path) {
		return nil
	}
	var grants []Grant
	for _, p := range s.policies {
		if p.Perms != 0 && p.SPIFFEID.Match(id) && p.Path.glob.match(path) {
			grants = append(grants, Grant{Policy: p.Name, Perms: p.Perms})
		}
	}
	return grants
}

// MayList reports whether some policy grants id List on a path under dir,
// so that a filtered listing may show dir as a directory. dir is "" or a
// valid prefix ending with '/'.
func (s *Set) MayList(id spiffeid.ID, dir string) bool {
	if !validDir(dir) {
		return false
	}
	for _, p := range s.policies {
		if p.Perms.Has(List) && p.SPIFFEID.Match(id) && p.Path.glob.mayMatchUnder(dir, secret.MaxPathLen) {
			return true
		}
	}
	return false
}

// MayUnder reports whether some policy grants id perm on a path under
// dir ("" or a valid prefix ending with '/').
func (s *Set) MayUnder(id spiffeid.ID, dir string, perm Perm) bool {
	if !validDir(dir) {
		return false
	}
	for _, p := range s.policies {
		if p.Perms.Has(perm) && p.SPIFFEID.Match(id) && p.Path.glob.mayMatchUnder(dir, secret.MaxPathLen) {
			return true
		}
	}
	return false
}

// Len returns the number of policies in s.
func (s *Set) Len() int { return len(s.policies) }
