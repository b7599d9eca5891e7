package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	const charset = "name: may contain only letters, digits, '.', '_' and '-' (byte %d)"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"simple", "web-read", ""},
		{"all characters", "A-Z_a-z.0-9", ""},
		{"one byte", "a", ""},
		{"max length", strings.Repeat("a", 64), ""},
		{"empty", "", "name: must not be empty"},
		{"too long", strings.Repeat("a", 65), "name: must be at most 64 bytes, got 65"},
		{"slash", "apps/web", fmt.Sprintf(charset, 4)},
		{"space", "web read", fmt.Sprintf(charset, 3)},
		{"star", "web*", fmt.Sprintf(charset, 3)},
		{"non-ASCII", "caf\u00e9", fmt.Sprintf(charset, 3)},
		{"NUL", "a\x00", fmt.Sprintf(charset, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, result(t, policy.ValidateName(tt.in), "name")); diff != "" {
				t.Errorf("ValidateName(%q) error mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	const (
		id   = "spiffe://example.org/app/web"
		path = "apps/web/**"
	)
	perms := []string{"read", "list"}
	tests := []struct {
		name                  string
		polName, idPat, pathP string
		perms                 []string
		wantField, wantErr    string
	}{
		{"valid", "web", id, path, perms, "", ""},
		{"bad name", "", id, path, perms, "name", "name: must not be empty"},
		{"bad id", "web", "app/web", path, perms, "spiffe_id_pattern", `spiffe_id_pattern: must start with "spiffe://"`},
		{"bad path", "web", id, "apps/web/", perms, "path_pattern", "path_pattern: must not end with '/'"},
		{"bad perms", "web", id, path, nil, "permissions",
			"permissions: must not be empty; valid: read, list, write, delete, destroy, meta"},
		{"first error wins", "", "x", "/", nil, "name", "name: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := policy.New(tt.polName, tt.idPat, tt.pathP, tt.perms)
			if diff := cmp.Diff(tt.wantErr, result(t, err, tt.wantField)); diff != "" {
				t.Fatalf("New error mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			want := policy.Policy{Name: "web", SPIFFEID: mustID(t, id), Path: mustPath(t, path), Perms: policy.Read | policy.List}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("New mismatch (-want +got):\n%s", diff)
			}
			if got.SPIFFEID.String() != id || got.Path.String() != path {
				t.Errorf("New patterns = %q, %q; want %q, %q", got.SPIFFEID, got.Path, id, path)
			}
		})
	}
}

func mustID(t *testing.T, s string) policy.IDPattern {
	t.Helper()
	p, err := policy.CompileID(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPath(t *testing.T, s string) policy.Pattern {
	t.Helper()
	p, err := policy.CompilePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
