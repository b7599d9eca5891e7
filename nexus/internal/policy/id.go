package policy

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// MaxIDPatternLen is the longest SPIFFE ID pattern, in bytes: the longest
// SPIFFE ID the SPIFFE standard allows.
const MaxIDPatternLen = 2048

// IDPattern is a compiled SPIFFE ID pattern: a literal trust domain and a
// glob over the ID's path. The zero IDPattern matches nothing.
type IDPattern struct {
	src  string
	td   spiffeid.TrustDomain
	glob glob
	// literal is the one ID the pattern matches when it has no wildcard
	// (as spiffeid.ID.String spells it), "" otherwise; stem is the part
	// every matching ID starts with up to its first path segment's end
	// ("spiffe://td/app" for spiffe://td/app/*), "" when that segment has a
	// wildcard. Sets look policies up by them instead of trying each.
	literal, stem string
}

// CompileID compiles a SPIFFE ID pattern of the form
// spiffe://<trust domain>/<path pattern>. Errors are fault.Invalid and name
// the field spiffe_id_pattern.
func CompileID(s string) (IDPattern, error) {
	const field = "spiffe_id_pattern"
	const scheme = "spiffe://"
	if s == "" {
		return IDPattern{}, fault.New(fault.Invalid, "%s: must not be empty", field)
	}
	if len(s) > MaxIDPatternLen {
		return IDPattern{}, fault.New(fault.Invalid, "%s: must be at most %d bytes, got %d", field, MaxIDPatternLen, len(s))
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return IDPattern{}, fault.New(fault.Invalid, "%s: must start with %q", field, scheme)
	}
	name, path, _ := strings.Cut(rest, "/")
	switch {
	case name == "":
		return IDPattern{}, fault.New(fault.Invalid, "%s: trust domain must not be empty", field)
	case strings.Contains(name, "*"):
		return IDPattern{}, fault.New(fault.Invalid,
			"%s: trust domain %q must be literal: wildcards are allowed only in the path", field, name)
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return IDPattern{}, fault.Wrap(fault.Invalid, err, "%s: trust domain %q: %v", field, name, err)
	}
	if path == "" {
		return IDPattern{}, fault.New(fault.Invalid,
			"%s: must have a path pattern after the trust domain, such as spiffe://%s/** for every workload", field, name)
	}
	if path[0] == '/' {
		return IDPattern{}, fault.New(fault.Invalid, "%s: must not contain empty segments (\"//\")", field)
	}
	g, err := compileGlob(field, path, len(scheme)+len(name)+1)
	if err != nil {
		return IDPattern{}, err
	}
	p := IDPattern{src: s, td: td, glob: g}
	// The trust domain parsed is its canonical (lower-case) name.
	if !strings.Contains(path, "*") {
		// Every segment literal: the glob matches exactly this path.
		p.literal = td.IDString() + "/" + path
	} else if first, _, _ := strings.Cut(path, "/"); !strings.Contains(first, "*") {
		p.stem = td.IDString() + "/" + first
	}
	return p, nil
}

// Match reports whether id is in p's trust domain and p's path pattern
// matches id's path without its leading '/'. An ID without a path, such as
// spiffe://example.org, matches nothing.
func (p IDPattern) Match(id spiffeid.ID) bool {
	path := strings.TrimPrefix(id.Path(), "/")
	return !p.td.IsZero() && id.TrustDomain() == p.td && path != "" && p.glob.match(path)
}

// stemOf is the stem (see IDPattern) that patterns matching id have.
func stemOf(id spiffeid.ID) string {
	s := id.String()
	rest := len(id.TrustDomain().IDString()) + 1 // past "spiffe://td/"
	if rest > len(s) {
		return s
	}
	if i := strings.IndexByte(s[rest:], '/'); i >= 0 {
		return s[:rest+i]
	}
	return s
}

// String returns the pattern as it was compiled.
func (p IDPattern) String() string { return p.src }

// Equal reports whether p and q were compiled from the same text. It lets
// go-cmp compare values that hold patterns.
func (p IDPattern) Equal(q IDPattern) bool { return p.src == q.src }
