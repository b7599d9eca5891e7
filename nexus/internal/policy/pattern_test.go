package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

func TestCompilePath(t *testing.T) {
	t.Parallel()
	const (
		charset  = "path_pattern: may contain only letters, digits, '.', '_', '-', '/' and '*' (byte %d)"
		wildcard = "path_pattern: %s is not supported (byte %d): the only wildcards are '*' within a segment and '**' as a whole segment"
	)
	tests := []struct {
		name    string
		pattern string
		want    string
	}{
		{"literal", "apps/web/db", ""},
		{"single segment", "db", ""},
		{"all literal characters", "A-Z_a-z.0-9/x", ""},
		{"star alone", "*", ""},
		{"double star alone", "**", ""},
		{"star in segment", "apps/db-*", ""},
		{"several stars in segment", "a/*-*.*", ""},
		{"adjacent stars across slash", "*/*", ""},
		{"double star first", "**/db", ""},
		{"double star middle", "apps/**/db", ""},
		{"double star last", "apps/**", ""},
		{"double stars consecutive", "apps/**/**/db", ""},
		{"dot glob", ".*", ""},
		{"dots in longer segment", "a/..b/c...", ""},
		{"max length", strings.Repeat("a", 512), ""},
		{"max length of double stars", strings.Repeat("**/", 170) + "**", ""},
		{"empty", "", "path_pattern: must not be empty"},
		{"too long", strings.Repeat("*", 513), "path_pattern: must be at most 512 bytes, got 513"},
		{"leading slash", "/apps/*", "path_pattern: must not start with '/'"},
		{"only slash", "/", "path_pattern: must not start with '/'"},
		{"trailing slash", "apps/", "path_pattern: must not end with '/'"},
		{"trailing slash after double star", "apps/**/", "path_pattern: must not end with '/'"},
		{"empty segment", "apps//db", `path_pattern: must not contain empty segments ("//")`},
		{"dot segment", "apps/./db", `path_pattern: must not contain "." segments`},
		{"dotdot segment", "apps/../db", `path_pattern: must not contain ".." segments`},
		{"dotdot alone", "..", `path_pattern: must not contain ".." segments`},
		{"double star suffix", "a**", `path_pattern: "**" must be a whole segment, got "a**"`},
		{"double star prefix", "apps/**b", `path_pattern: "**" must be a whole segment, got "**b"`},
		{"triple star", "***", `path_pattern: "**" must be a whole segment, got "***"`},
		{"double star inside", "a/x**y/b", `path_pattern: "**" must be a whole segment, got "x**y"`},
		{"question mark", "apps/we?", fmt.Sprintf(wildcard, `'?'`, 7)},
		{"bracket", "apps/[ab]", fmt.Sprintf(wildcard, `'['`, 5)},
		{"brace", "apps/{a,b}", fmt.Sprintf(wildcard, `'{'`, 5)},
		{"negation", "!apps", fmt.Sprintf(wildcard, `'!'`, 0)},
		{"regexp anchor", "^apps/.*$", fmt.Sprintf(wildcard, `'^'`, 0)},
		{"regexp plus", "apps/a+", fmt.Sprintf(wildcard, `'+'`, 6)},
		{"backslash", `apps\/db`, fmt.Sprintf(wildcard, `'\\'`, 4)},
		{"space", "apps/my db", fmt.Sprintf(charset, 7)},
		{"percent", "apps/%", fmt.Sprintf(charset, 5)},
		{"colon", "a:b", fmt.Sprintf(charset, 1)},
		{"non-ASCII", "caf\u00e9", fmt.Sprintf(charset, 3)},
		{"NUL", "a\x00b", "path_pattern: must not contain control characters (byte 1)"},
		{"newline", "a/*\n", "path_pattern: must not contain control characters (byte 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := policy.CompilePath(tt.pattern)
			if diff := cmp.Diff(tt.want, result(t, err, "path_pattern")); diff != "" {
				t.Errorf("CompilePath(%q) error mismatch (-want +got):\n%s", tt.pattern, diff)
			}
			if err == nil && p.String() != tt.pattern {
				t.Errorf("CompilePath(%q).String() = %q", tt.pattern, p.String())
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		yes     []string
		no      []string
	}{
		{
			pattern: "apps/web",
			yes:     []string{"apps/web"},
			no:      []string{"apps/web2", "xapps/web", "apps/web/x", "apps/we", "apps", "APPS/web", "apps/web/"},
		},
		{
			pattern: "apps/web/db",
			yes:     []string{"apps/web/db"},
			no:      []string{"apps/web/db2", "apps/web/db/x", "x/apps/web/db", "apps/web", "apps/webx/db"},
		},
		{
			pattern: "apps/db-*",
			yes:     []string{"apps/db-main", "apps/db-", "apps/db-a.b-c"},
			no:      []string{"apps/db", "apps/db-main/x", "apps/xdb-main", "apps/DB-main"},
		},
		{
			pattern: "apps/*-key",
			yes:     []string{"apps/api-key", "apps/-key", "apps/a-key-key"},
			no:      []string{"apps/api-key2", "apps/key", "apps/x/api-key"},
		},
		{
			pattern: "a/*x*y*",
			yes:     []string{"a/xy", "a/1x2y3", "a/yxy", "a/xxyy", "a/xyxy"},
			no:      []string{"a/yx", "a/x", "a/y", "a/x/y"},
		},
		{
			pattern: "a/ab*ba",
			yes:     []string{"a/abba", "a/ab-ba", "a/abbba"},
			no:      []string{"a/aba", "a/ab", "a/ba"},
		},
		{
			pattern: "apps/*",
			yes:     []string{"apps/web", "apps/a"},
			no:      []string{"apps", "apps/web/db", "xapps/web", "web"},
		},
		{
			pattern: "*",
			yes:     []string{"db", "apps"},
			no:      []string{"apps/db"},
		},
		{
			pattern: "*/db",
			yes:     []string{"web/db", "api/db"},
			no:      []string{"db", "apps/web/db", "web/db2"},
		},
		{
			pattern: "apps/*/db",
			yes:     []string{"apps/web/db", "apps/api/db"},
			no:      []string{"apps/db", "apps/a/b/db", "apps/web/db2"},
		},
		{
			pattern: "**",
			yes:     []string{"db", "apps/web/db", "a/b/c/d/e/f"},
		},
		{
			pattern: "**/db",
			yes:     []string{"db", "apps/db", "apps/web/db"},
			no:      []string{"xdb", "apps/xdb", "apps/db/x", "db2"},
		},
		{
			pattern: "apps/**/db",
			yes:     []string{"apps/db", "apps/web/db", "apps/a/b/c/db"},
			no:      []string{"apps", "db", "apps/web/db2", "apps/web/xdb", "xapps/db", "apps/db/x"},
		},
		{
			pattern: "apps/**",
			yes:     []string{"apps", "apps/web", "apps/web/db"},
			no:      []string{"apps2", "xapps", "apps2/web", "web/apps"},
		},
		{
			pattern: "apps/web/**",
			yes:     []string{"apps/web", "apps/web/db", "apps/web/db/old"},
			no:      []string{"apps/web2/db", "apps/web2", "apps/we", "apps"},
		},
		{
			pattern: "**/**",
			yes:     []string{"a", "a/b", "a/b/c"},
		},
		{
			pattern: "a/**/b/**/c",
			yes:     []string{"a/b/c", "a/x/b/y/c", "a/b/b/c", "a/x/y/b/c", "a/b/x/b/c"},
			no:      []string{"a/c", "a/b", "b/c", "a/x/c", "a/b/c/d"},
		},
		{
			pattern: "**/a/*/b/**",
			yes:     []string{"a/x/b", "q/a/x/b/z", "a/a/a/b/b"},
			no:      []string{"a/b", "a/x/y/b", "a/x/c"},
		},
		{
			pattern: "**/*.env",
			yes:     []string{".env", "apps/.env", "apps/web/prod.env"},
			no:      []string{"apps/env", "apps/web/prod.env/x"},
		},
		{
			pattern: "apps/*",
			// Paths that are not valid secret paths match nothing.
			no: []string{"", "apps/", "apps/..", "apps/.", "apps//", "/apps/x", "apps/a b", "apps/*"},
		},
		{
			pattern: "**",
			no:      []string{"", "/", "a//b", "a/../b", "a/", strings.Repeat("a", 513)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			p, err := policy.CompilePath(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, path := range append(tt.yes, tt.no...) {
				if p.Match(path) {
					got = append(got, path)
				}
			}
			if diff := cmp.Diff(tt.yes, got); diff != "" {
				t.Errorf("paths that %q matches (-want +got):\n%s", tt.pattern, diff)
			}
		})
	}
}

// TestPatternMatchManySegments covers patterns with more states than fit in
// one word of the matcher's state sets.
func TestPatternMatchManySegments(t *testing.T) {
	t.Parallel()
	pattern := strings.Repeat("a/**/", 100) + "z"
	p, err := policy.CompilePath(pattern)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{strings.Repeat("a/", 100) + "z", true},
		{strings.Repeat("a/b/", 100) + "z", true},
		{strings.Repeat("a/", 99) + "z", false},
		{strings.Repeat("a/", 100) + "z/y", false},
		{strings.Repeat("a/", 150) + "z", true},
	}
	for _, tt := range tests {
		if got := p.Match(tt.path); got != tt.want {
			t.Errorf("Match(%d-byte path) = %v, want %v", len(tt.path), got, tt.want)
		}
	}
}

// TestPatternMatchLinear makes sure a pattern built to make a backtracking
// matcher take exponential time is answered quickly.
func TestPatternMatchLinear(t *testing.T) {
	t.Parallel()
	p, err := policy.CompilePath(strings.Repeat("**/a/", 50) + "b")
	if err != nil {
		t.Fatal(err)
	}
	path := strings.Repeat("a/", 255) + "c"
	for range 100 {
		if p.Match(path) {
			t.Fatal("matched")
		}
	}
	seg, err := policy.CompilePath(strings.Repeat("*a", 100) + "*b")
	if err != nil {
		t.Fatal(err)
	}
	if seg.Match(strings.Repeat("a", 511)) {
		t.Fatal("matched")
	}
}

func TestPatternMayMatchUnder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		yes     []string
		no      []string
	}{
		{
			pattern: "apps/web/db",
			yes:     []string{"", "apps/", "apps/web/"},
			no:      []string{"apps/web/db/", "apps/api/", "web/", "apps/web2/", "app/"},
		},
		{
			pattern: "apps/*/db",
			yes:     []string{"", "apps/", "apps/web/", "apps/api/"},
			no:      []string{"apps/web/db/", "apps/web/x/", "other/"},
		},
		{
			pattern: "apps/db-*",
			yes:     []string{"", "apps/"},
			no:      []string{"apps/db-main/", "apps/db/"},
		},
		{
			pattern: "apps/**",
			yes:     []string{"", "apps/", "apps/web/", "apps/a/b/c/"},
			no:      []string{"other/", "apps2/"},
		},
		{
			pattern: "**",
			yes:     []string{"", "a/", "a/b/c/"},
		},
		{
			pattern: "**/db",
			yes:     []string{"", "a/", "a/b/", "db/"},
		},
		{
			pattern: "apps/**/db",
			yes:     []string{"", "apps/", "apps/x/", "apps/db/"},
			no:      []string{"x/", "db/"},
		},
		{
			pattern: "*",
			yes:     []string{""},
			no:      []string{"a/", "a/b/"},
		},
		{
			pattern: "apps/*",
			// Not a directory, or not a valid prefix.
			no: []string{"apps", "ap", "/", "//", "apps//", "../", "apps/../", "a b/"},
		},
		{
			pattern: "a/**",
			// A path under a 510-byte directory has room for one more byte.
			yes: []string{"a/" + strings.Repeat("b", 508) + "/"},
			no:  []string{"a/" + strings.Repeat("b", 509) + "/"},
		},
		{
			pattern: "*/*/*",
			// Two more segments of one byte need three more bytes.
			yes: []string{strings.Repeat("b", 508) + "/"},
			no:  []string{strings.Repeat("b", 509) + "/"},
		},
		{
			pattern: "a/*/*.",
			// The shortest segment "*." matches is "x.", as "." is no segment.
			yes: []string{"a/" + strings.Repeat("b", 507) + "/"},
			no:  []string{"a/" + strings.Repeat("b", 508) + "/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			p, err := policy.CompilePath(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, dir := range append(tt.yes, tt.no...) {
				if p.MayMatchUnder(dir) {
					got = append(got, dir)
				}
			}
			if diff := cmp.Diff(tt.yes, got); diff != "" {
				t.Errorf("directories under which %q may match (-want +got):\n%s", tt.pattern, diff)
			}
		})
	}
}

func TestZeroPatternMatchesNothing(t *testing.T) {
	t.Parallel()
	var p policy.Pattern
	if p.Match("a") || p.MayMatchUnder("") || p.MayMatchUnder("a/") {
		t.Error("zero Pattern matches")
	}
}
