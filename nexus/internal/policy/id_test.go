package policy_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

func TestCompileID(t *testing.T) {
	t.Parallel()
	const tdChars = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
	tests := []struct {
		name    string
		pattern string
		want    string
	}{
		{"literal", "spiffe://example.org/app/web", ""},
		{"star", "spiffe://example.org/app/*", ""},
		{"every workload", "spiffe://example.org/**", ""},
		{"star in segment", "spiffe://spike.local/ns/prod/sa/web-*", ""},
		{"trust domain charset", "spiffe://a-b_c.0/x", ""},
		{"long", "spiffe://example.org/" + strings.Repeat("a/", 1013) + "a", ""},
		{"empty", "", "spiffe_id_pattern: must not be empty"},
		{"too long", "spiffe://example.org/" + strings.Repeat("a", 2028), "spiffe_id_pattern: must be at most 2048 bytes, got 2049"},
		{"no scheme", "example.org/app", `spiffe_id_pattern: must start with "spiffe://"`},
		{"wrong scheme", "https://example.org/app", `spiffe_id_pattern: must start with "spiffe://"`},
		{"upper-case scheme", "SPIFFE://example.org/app", `spiffe_id_pattern: must start with "spiffe://"`},
		{"one slash", "spiffe:/example.org/app", `spiffe_id_pattern: must start with "spiffe://"`},
		{"empty trust domain", "spiffe:///app", "spiffe_id_pattern: trust domain must not be empty"},
		{"wildcard trust domain", "spiffe://*.example.org/app",
			`spiffe_id_pattern: trust domain "*.example.org" must be literal: wildcards are allowed only in the path`},
		{"double star trust domain", "spiffe://**/app",
			`spiffe_id_pattern: trust domain "**" must be literal: wildcards are allowed only in the path`},
		{"upper-case trust domain", "spiffe://Example.org/app", `spiffe_id_pattern: trust domain "Example.org": ` + tdChars},
		{"port", "spiffe://example.org:8443/app", `spiffe_id_pattern: trust domain "example.org:8443": ` + tdChars},
		{"user info", "spiffe://me@example.org/app", `spiffe_id_pattern: trust domain "me@example.org": ` + tdChars},
		{"no path", "spiffe://example.org",
			"spiffe_id_pattern: must have a path pattern after the trust domain, such as spiffe://example.org/** for every workload"},
		{"slash only", "spiffe://example.org/",
			"spiffe_id_pattern: must have a path pattern after the trust domain, such as spiffe://example.org/** for every workload"},
		{"double slash", "spiffe://example.org//app", `spiffe_id_pattern: must not contain empty segments ("//")`},
		{"trailing slash", "spiffe://example.org/app/", "spiffe_id_pattern: must not end with '/'"},
		{"empty segment", "spiffe://example.org/a//b", `spiffe_id_pattern: must not contain empty segments ("//")`},
		{"dotdot", "spiffe://example.org/app/..", `spiffe_id_pattern: must not contain ".." segments`},
		{"bad double star", "spiffe://example.org/app**", `spiffe_id_pattern: "**" must be a whole segment, got "app**"`},
		{"query", "spiffe://example.org/app?x",
			"spiffe_id_pattern: '?' is not supported (byte 24): the only wildcards are '*' within a segment and '**' as a whole segment"},
		{"fragment", "spiffe://example.org/app#x",
			"spiffe_id_pattern: may contain only letters, digits, '.', '_', '-', '/' and '*' (byte 24)"},
		{"percent", "spiffe://example.org/a%20b",
			"spiffe_id_pattern: may contain only letters, digits, '.', '_', '-', '/' and '*' (byte 22)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := policy.CompileID(tt.pattern)
			if diff := cmp.Diff(tt.want, result(t, err, "spiffe_id_pattern")); diff != "" {
				t.Errorf("CompileID(%q) error mismatch (-want +got):\n%s", tt.pattern, diff)
			}
			if err == nil && p.String() != tt.pattern {
				t.Errorf("CompileID(%q).String() = %q", tt.pattern, p.String())
			}
		})
	}
}

func TestIDPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		yes     []string
		no      []string
	}{
		{
			pattern: "spiffe://example.org/app/web",
			yes:     []string{"spiffe://example.org/app/web"},
			no: []string{
				"spiffe://example.org/app/web2", "spiffe://example.org/app/web/x", "spiffe://example.org/xapp/web",
				"spiffe://other.org/app/web", "spiffe://example.org.evil/app/web", "spiffe://sub.example.org/app/web",
			},
		},
		{
			pattern: "spiffe://example.org/app/*",
			yes:     []string{"spiffe://example.org/app/web", "spiffe://example.org/app/api"},
			no:      []string{"spiffe://example.org/app", "spiffe://example.org/app/web/v2", "spiffe://other.org/app/web"},
		},
		{
			pattern: "spiffe://example.org/ns/*/sa/web-*",
			yes:     []string{"spiffe://example.org/ns/prod/sa/web-1", "spiffe://example.org/ns/dev/sa/web-"},
			no:      []string{"spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/a/b/sa/web-1"},
		},
		{
			pattern: "spiffe://example.org/**",
			yes:     []string{"spiffe://example.org/a", "spiffe://example.org/a/b/c"},
			no:      []string{"spiffe://example.org", "spiffe://other.org/a"},
		},
		{
			pattern: "spiffe://example.org/**/web",
			yes:     []string{"spiffe://example.org/web", "spiffe://example.org/a/b/web"},
			no:      []string{"spiffe://example.org/web/a", "spiffe://example.org/aweb", "spiffe://other.org/web"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			p, err := policy.CompileID(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range append(tt.yes, tt.no...) {
				if p.Match(spiffeid.RequireFromString(s)) {
					got = append(got, s)
				}
			}
			if diff := cmp.Diff(tt.yes, got); diff != "" {
				t.Errorf("IDs that %q matches (-want +got):\n%s", tt.pattern, diff)
			}
		})
	}
}

func TestZeroIDs(t *testing.T) {
	t.Parallel()
	var zero policy.IDPattern
	if zero.Match(spiffeid.RequireFromString("spiffe://example.org/a")) {
		t.Error("zero IDPattern matches")
	}
	p, err := policy.CompileID("spiffe://example.org/**")
	if err != nil {
		t.Fatal(err)
	}
	if p.Match(spiffeid.ID{}) {
		t.Error("pattern matches the zero ID")
	}
}
