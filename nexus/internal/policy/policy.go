// Package policy decides what a workload may do with a secret. A policy
// grants permissions on the secrets whose path matches its path pattern to
// the callers whose SPIFFE ID matches its SPIFFE ID pattern. Access is denied
// unless a policy grants it, and the permissions of all matching policies
// add up. The package does no I/O.
//
// # Path patterns
//
// A path pattern always describes a whole path: it is anchored at both ends
// and works on whole segments, so apps/web matches the path apps/web only,
// never apps/web2, xapps/web or apps/web/x.
//
// A pattern is 1 to 512 bytes of segments separated by '/'. Each segment is
// either
//
//   - "**", which matches zero or more whole segments, or
//   - a segment glob made of letters, digits, '.', '_', '-' and '*', in which
//     '*' matches any run of characters other than '/', possibly empty, and
//     every other character matches itself (case-sensitively).
//
// A pattern must not start or end with '/' and must not contain empty
// segments ("//") or "." or ".." segments. "**" must be a whole segment:
// a**, **b and *** are refused. There are no other wildcards: '?', '[', '{'
// and the like are refused. Consecutive "**" segments mean the same as one.
//
//	apps/web/db    apps/web/db only
//	apps/web/*     apps/web/db, apps/web/api-key; not apps/web or apps/web/db/old
//	apps/web/**    apps/web itself, apps/web/db, apps/web/db/old; not apps/web2/db
//	apps/*/db      apps/web/db, apps/api/db; not apps/db or apps/a/b/db
//	apps/**/db     apps/db, apps/web/db, apps/a/b/db
//	apps/db-*      apps/db-main, apps/db-; not apps/db or apps/db-main/x
//	*/db           web/db, api/db; not db or apps/web/db
//	**/db          db, apps/db, apps/web/db
//	**             every path
//
// A path that is not a valid secret path matches no pattern. Matching takes
// time proportional to the length of the path times the number of segments
// of the pattern, whatever the pattern.
//
// # SPIFFE ID patterns
//
// A SPIFFE ID pattern is spiffe://<trust domain>/<path pattern>, at most 2048
// bytes. The trust domain is literal (lowercase letters, digits, '.', '-' and
// '_') and compared exactly: an ID in another trust domain never matches. The
// path pattern is required and follows the rules above (without the 512-byte
// limit); it is matched against the ID's path without its leading '/'. For
// example spiffe://example.org/app/* matches spiffe://example.org/app/web but
// not spiffe://example.org/app/web/v2 or spiffe://other.org/app/web, and
// spiffe://example.org/** matches every ID of example.org that has a path. An
// ID without a path, such as spiffe://example.org, matches no pattern.
package policy

import (
	"github.com/spike-dev/spike/nexus/internal/fault"
)

// MaxNameLen is the longest policy name, in bytes.
const MaxNameLen = 64

// Policy grants Perms on the secrets whose path matches Path to the callers
// whose SPIFFE ID matches SPIFFEID.
type Policy struct {
	Name     string
	SPIFFEID IDPattern
	Path     Pattern
	Perms    Perm
}

// ValidateName reports whether name may name a policy: 1 to MaxNameLen bytes
// of letters, digits, '.', '_' and '-'. The error is fault.Invalid.
func ValidateName(name string) error {
	if name == "" {
		return fault.New(fault.Invalid, "name: must not be empty")
	}
	if len(name) > MaxNameLen {
		return fault.New(fault.Invalid, "name: must be at most %d bytes, got %d", MaxNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		if !segmentByte(name[i]) {
			return fault.New(fault.Invalid, "name: may contain only letters, digits, '.', '_' and '-' (byte %d)", i)
		}
	}
	return nil
}

// New validates and compiles a policy. Fields are checked in order (name,
// spiffe_id_pattern, path_pattern, permissions) and the first error, a
// fault.Invalid naming its field, is returned.
func New(name, idPattern, pathPattern string, perms []string) (Policy, error) {
	if err := ValidateName(name); err != nil {
		return Policy{}, err
	}
	id, err := CompileID(idPattern)
	if err != nil {
		return Policy{}, err
	}
	path, err := CompilePath(pathPattern)
	if err != nil {
		return Policy{}, err
	}
	p, err := ParsePerms(perms)
	if err != nil {
		return Policy{}, err
	}
	return Policy{Name: name, SPIFFEID: id, Path: path, Perms: p}, nil
}
