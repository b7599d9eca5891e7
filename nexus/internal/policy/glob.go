package policy

import (
	"strings"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// glob is a compiled path glob: a sequence of segments, matched by a
// nondeterministic automaton whose states are the positions 0..len(segs) in
// the pattern. Reading one path segment moves every live state at most one
// position, so matching takes time proportional to the number of path
// segments times the number of pattern segments, with no backtracking.
type glob struct {
	segs []segment
	// minRest[i] is the length of the shortest non-empty valid path that
	// matches segs[i:].
	minRest []int
}

// segment is one segment of a glob: "**", or the literal parts of a
// segment glob around its '*'s (one part when it has no '*').
type segment struct {
	any   bool
	parts []string
}

// wildcardLike are bytes that other pattern languages use as metacharacters.
// They get a clearer message than other refused bytes.
const wildcardLike = `?[]{}()!^$+|\,`

// compileGlob checks s against the pattern grammar and compiles it. Errors
// name field and give byte positions counted from offset. The caller
// checks the length.
func compileGlob(field, s string, offset int) (glob, error) {
	if s == "" {
		return glob{}, fault.New(fault.Invalid, "%s: must not be empty", field)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return glob{}, fault.New(fault.Invalid,
				"%s: must not contain control characters (byte %d)", field, offset+i)
		case strings.IndexByte(wildcardLike, c) >= 0:
			return glob{}, fault.New(fault.Invalid,
				"%s: %q is not supported (byte %d): the only wildcards are '*' within a segment and '**' as a whole segment",
				field, c, offset+i)
		case c != '*' && c != '/' && !segmentByte(c):
			return glob{}, fault.New(fault.Invalid,
				"%s: may contain only letters, digits, '.', '_', '-', '/' and '*' (byte %d)", field, offset+i)
		}
	}
	if s[0] == '/' {
		return glob{}, fault.New(fault.Invalid, "%s: must not start with '/'", field)
	}
	if s[len(s)-1] == '/' {
		return glob{}, fault.New(fault.Invalid, "%s: must not end with '/'", field)
	}
	var g glob
	for seg := range strings.SplitSeq(s, "/") {
		switch {
		case seg == "":
			return glob{}, fault.New(fault.Invalid, "%s: must not contain empty segments (\"//\")", field)
		case seg == "." || seg == "..":
			return glob{}, fault.New(fault.Invalid, "%s: must not contain %q segments", field, seg)
		case seg == "**":
			if n := len(g.segs); n > 0 && g.segs[n-1].any {
				continue // "**/**" is the same as "**"
			}
			g.segs = append(g.segs, segment{any: true})
		case strings.Contains(seg, "**"):
			return glob{}, fault.New(fault.Invalid, "%s: \"**\" must be a whole segment, got %q", field, seg)
		default:
			g.segs = append(g.segs, segment{parts: strings.Split(seg, "*")})
		}
	}
	g.minRest = make([]int, len(g.segs))
	sum, globs := 0, 0
	for i := len(g.segs) - 1; i >= 0; i-- {
		if !g.segs[i].any {
			sum += g.segs[i].minLen()
			globs++
		}
		if globs == 0 {
			g.minRest[i] = 1 // "**" needs one segment of one byte
		} else {
			g.minRest[i] = sum + globs - 1
		}
	}
	return g, nil
}

// segmentByte reports whether c may appear in a path segment: the charset of
// secret paths and of SPIFFE ID paths.
func segmentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// match reports whether the segment glob s matches the path segment x. The
// first part must be a prefix and the last a suffix; the parts between are
// found leftmost-first, which is enough because '*' matches anything.
func (s segment) match(x string) bool {
	if len(s.parts) == 1 {
		return x == s.parts[0]
	}
	first, last := s.parts[0], s.parts[len(s.parts)-1]
	if len(x) < len(first)+len(last) || !strings.HasPrefix(x, first) || !strings.HasSuffix(x, last) {
		return false
	}
	x = x[len(first) : len(x)-len(last)]
	for _, part := range s.parts[1 : len(s.parts)-1] {
		i := strings.Index(x, part)
		if i < 0 {
			return false
		}
		x = x[i+len(part):]
	}
	return true
}

// minLen returns the length of the shortest valid path segment that the
// segment glob s matches: its literal parts, plus one byte for a '*' if
// the literal parts alone are empty, "." or "..".
func (s segment) minLen() int {
	lit := strings.Join(s.parts, "")
	if len(s.parts) > 1 && (lit == "" || lit == "." || lit == "..") {
		return len(lit) + 1
	}
	return len(lit)
}

// match reports whether path matches g. It does not check that path is
// well formed.
func (g glob) match(path string) bool {
	var buf [8]uint64
	cur, next := g.sets(buf[:])
	return g.walk(path, cur, next).has(len(g.segs))
}

// mayMatchUnder reports whether some valid path dir+rest, rest non-empty,
// matches g. dir must be "" or a valid prefix ending with '/'.
func (g glob) mayMatchUnder(dir string, maxLen int) bool {
	var buf [8]uint64
	cur, next := g.sets(buf[:])
	if dir == "" {
		cur.add(0)
		g.close(cur)
	} else {
		cur = g.walk(dir[:len(dir)-1], cur, next)
	}
	for i := range g.segs {
		if cur.has(i) && len(dir)+g.minRest[i] <= maxLen {
			return true
		}
	}
	return false
}

// sets returns two empty state sets for g, in buf if it is large enough.
func (g glob) sets(buf []uint64) (cur, next stateSet) {
	w := len(g.segs)/64 + 1
	if 2*w > len(buf) {
		buf = make([]uint64, 2*w)
	}
	return buf[:w], buf[w : 2*w]
}

// walk returns the states g is in after reading the '/'-separated segments
// of path from the start state. cur and next are scratch sets; the result
// is one of them.
func (g glob) walk(path string, cur, next stateSet) stateSet {
	clear(cur)
	cur.add(0)
	g.close(cur)
	for {
		seg, rest, more := strings.Cut(path, "/")
		clear(next)
		for i, s := range g.segs {
			switch {
			case !cur.has(i):
			case s.any:
				next.add(i)
			case s.match(seg):
				next.add(i + 1)
			}
		}
		g.close(next)
		cur, next = next, cur
		if !more || cur.empty() {
			return cur
		}
		path = rest
	}
}

// close adds to set the states reachable without reading a segment: a "**"
// may match zero segments.
func (g glob) close(set stateSet) {
	for i, s := range g.segs {
		if s.any && set.has(i) {
			set.add(i + 1)
		}
	}
}

// stateSet is a set of automaton states, one bit each.
type stateSet []uint64

func (s stateSet) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

func (s stateSet) add(i int) { s[i/64] |= 1 << (i % 64) }

func (s stateSet) empty() bool {
	for _, w := range s {
		if w != 0 {
			return false
		}
	}
	return true
}
