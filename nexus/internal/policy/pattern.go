package policy

import (
	"strings"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Pattern is a compiled secret-path pattern; the package documentation
// describes the language. The zero Pattern matches nothing.
type Pattern struct {
	src  string
	glob glob
}

// CompilePath compiles a path pattern. Errors are fault.Invalid and name the
// field path_pattern.
func CompilePath(s string) (Pattern, error) {
	const field = "path_pattern"
	if len(s) > secret.MaxPathLen {
		return Pattern{}, fault.New(fault.Invalid, "%s: must be at most %d bytes, got %d", field, secret.MaxPathLen, len(s))
	}
	g, err := compileGlob(field, s, 0)
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{src: s, glob: g}, nil
}

// Match reports whether p matches the whole of path. A path that is not a
// valid secret path (see secret.ValidatePath) matches nothing.
func (p Pattern) Match(path string) bool {
	return validPath(path) && p.glob.match(path)
}

// MayMatchUnder reports whether p matches some valid secret path that is dir
// followed by at least one more segment, so that a filtered listing may show
// dir as a directory. dir is "" (the root) or a valid prefix ending with
// '/'; any other dir gives false.
func (p Pattern) MayMatchUnder(dir string) bool {
	return validDir(dir) && p.glob.mayMatchUnder(dir, secret.MaxPathLen)
}

// String returns the pattern as it was compiled.
func (p Pattern) String() string { return p.src }

// Equal reports whether p and q were compiled from the same text. It lets
// go-cmp compare values that hold patterns.
func (p Pattern) Equal(q Pattern) bool { return p.src == q.src }

// validPath reports whether path is a valid secret path.
func validPath(path string) bool { return secret.ValidatePath(path) == nil }

// validDir reports whether dir is "" or a valid prefix ending with '/'.
func validDir(dir string) bool {
	return dir == "" || strings.HasSuffix(dir, "/") && secret.ValidatePrefix(dir) == nil
}
