package policy_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// patternSeeds are good and bad patterns the fuzzers start from.
var patternSeeds = []string{
	"apps/web", "apps/web/db", "apps/db-*", "apps/*-key", "a/*x*y*", "a/ab*ba", "*", "**", "*/db",
	"**/db", "apps/**", "apps/**/db", "**/**", "a/**/b/**/c", "**/a/*/b/**", "**/*.env", "*.", ".*",
	"*/*", "*/.*", "**/*..",
	"", "/", "a/", "/a", "a//b", "a/../b", ".", "a**", "**b", "***", "a/?", "a/[b]", "a b", "a\x00",
	strings.Repeat("**/a/", 50) + "b", strings.Repeat("*a", 100) + "*b", strings.Repeat("a/**/", 100) + "z",
	strings.Repeat("*", 512), strings.Repeat("a", 513),
}

// pathSeeds are good and bad paths the fuzzers start from.
var pathSeeds = []string{
	"apps/web", "apps/web2", "xapps/web", "apps/web/x", "apps/web/db", "apps/db-main", "apps/db-",
	"a/xyxy", "a/abba", "db", "web/db", "apps/a/b/db", "a/x/b/y/c", "apps/web/prod.env", ".env",
	"", "/", "a/", "a//b", "a/../b", "apps/*", "a b", strings.Repeat("a/", 255) + "c",
	strings.Repeat("a/b/", 100) + "z", strings.Repeat("a", 511),
}

// FuzzMatch checks Pattern.Match, and IDPattern.Match on the same path
// under a trust domain, against referenceRegexp, and that every rejected
// pattern is a fault.Invalid error naming the field.
func FuzzMatch(f *testing.F) {
	for _, pattern := range patternSeeds {
		for _, path := range pathSeeds {
			f.Add(pattern, path)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := policy.CompilePath(pattern)
		if want := referenceValidPattern(pattern); (err == nil) != want {
			t.Fatalf("CompilePath(%q) = %v, reference says valid = %v", pattern, err, want)
		}
		if err != nil {
			checkFieldError(t, err, "path_pattern")
			return
		}
		re := referenceRegexp(pattern)
		want := secret.ValidatePath(path) == nil && re.MatchString("/"+path)
		if got := p.Match(path); got != want {
			t.Fatalf("CompilePath(%q).Match(%q) = %v, reference %s says %v", pattern, path, got, re, want)
		}

		const prefix = "spiffe://example.org/"
		idp, err := policy.CompileID(prefix + pattern)
		if err != nil {
			t.Fatalf("CompileID(%q): %v", prefix+pattern, err)
		}
		id, err := spiffeid.FromString(prefix + path)
		if err != nil {
			return
		}
		want = re.MatchString("/" + path)
		if got := idp.Match(id); got != want {
			t.Fatalf("CompileID(%q).Match(%q) = %v, reference %s says %v", prefix+pattern, id, got, re, want)
		}
	})
}

// FuzzMayMatchUnder checks Pattern.MayMatchUnder against a search over
// candidate paths under dir: the shortest path matching each tail of the
// pattern (which includes the shortest match from every state the pattern
// can be in after dir), plus a few fixed ones. dir is tried as given and
// with a '/' appended.
func FuzzMayMatchUnder(f *testing.F) {
	for _, pattern := range patternSeeds {
		for _, dir := range []string{
			"", "apps/", "apps/web/", "a/", "a/x/b/", "db/", "x", strings.Repeat("a/", 254),
			strings.Repeat("b", 508) + "/", strings.Repeat("b", 510), strings.Repeat("b", 511), "a/" + strings.Repeat("b", 507) + "/",
		} {
			f.Add(pattern, dir)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, dir string) {
		p, err := policy.CompilePath(pattern)
		if err != nil {
			return
		}
		re := referenceRegexp(pattern)
		matches := func(path string) bool {
			return secret.ValidatePath(path) == nil && re.MatchString("/"+path)
		}
		segs := strings.Split(pattern, "/")
		for _, d := range []string{dir, dir + "/"} {
			got := p.MayMatchUnder(d)
			if d != "" && (!strings.HasSuffix(d, "/") || secret.ValidatePrefix(d) != nil) {
				if got {
					t.Fatalf("CompilePath(%q).MayMatchUnder(%q) = true for an invalid directory", pattern, d)
				}
				continue
			}
			want := false
			for j := range segs {
				if rest := shortestMatch(segs[j:]); matches(d + rest) {
					want = true
					break
				}
			}
			for _, rest := range []string{"x", "x/y", "x/y/z", "db", "a/b/c"} {
				if matches(d+rest) && !want {
					t.Fatalf("%q matches %q but the shortest-match search found nothing", pattern, d+rest)
				}
			}
			if got != want {
				t.Fatalf("CompilePath(%q).MayMatchUnder(%q) = %v, want %v", pattern, d, got, want)
			}
		}
	})
}

// referenceValidPattern is the documented pattern grammar written as plainly
// as possible: 1 to 512 bytes; segments separated by '/'; every segment
// non-empty, not "." or "..", and either "**" or made only of ASCII letters,
// digits, '.', '_', '-' and '*' without "**".
func referenceValidPattern(pattern string) bool {
	if len(pattern) < 1 || len(pattern) > secret.MaxPathLen {
		return false
	}
	for _, seg := range strings.Split(pattern, "/") {
		if seg == "**" {
			continue
		}
		if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "**") {
			return false
		}
		for _, c := range []byte(seg) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-*", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// referenceRegexp translates a valid pattern into an anchored regular
// expression to be matched against "/" + path. Writing each segment with
// the '/' before it lets "**" be zero or more "/segment" groups, with no
// special case for the slashes around it.
func referenceRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, seg := range strings.Split(pattern, "/") {
		if seg == "**" {
			b.WriteString("(?:/[^/]*)*")
			continue
		}
		b.WriteString("/")
		for i, lit := range strings.Split(seg, "*") {
			if i > 0 {
				b.WriteString("[^/]*")
			}
			b.WriteString(regexp.QuoteMeta(lit))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// shortestMatch returns the shortest non-empty valid path that the pattern
// segments segs match: "**" as no segment (or one "x" if there is nothing
// else), each '*' empty unless that leaves an empty, "." or ".." segment,
// in which case the first '*' is "x".
func shortestMatch(segs []string) string {
	var out []string
	for _, seg := range segs {
		if seg == "**" {
			continue
		}
		s := strings.ReplaceAll(seg, "*", "")
		if s == "" || s == "." || s == ".." {
			s = strings.ReplaceAll(strings.Replace(seg, "*", "x", 1), "*", "")
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "x"
	}
	return strings.Join(out, "/")
}

// checkFieldError fails unless err is nil or a *fault.Error with code
// fault.Invalid whose message starts with "field: ".
func checkFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		return
	}
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %q is a %T, want *fault.Error", err, err)
	}
	if fe.Code != fault.Invalid {
		t.Fatalf("error %q has code %v, want fault.Invalid", err, fe.Code)
	}
	if !strings.HasPrefix(err.Error(), field+": ") {
		t.Fatalf("error %q does not start with %q", err, field+": ")
	}
}
