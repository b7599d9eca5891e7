package policy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/policy"
)

// result reduces an error to what the tests compare: "" for nil, otherwise
// the message, which must come from a fault.Invalid error naming field.
func result(t *testing.T, err error, field string) string {
	t.Helper()
	if err == nil {
		return ""
	}
	checkFieldError(t, err, field)
	return err.Error()
}

func TestParsePerms(t *testing.T) {
	t.Parallel()
	const valid = "valid: read, list, write, delete, destroy, meta"
	tests := []struct {
		name    string
		names   []string
		want    policy.Perm
		wantErr string
	}{
		{"one", []string{"read"}, policy.Read, ""},
		{"two", []string{"read", "list"}, policy.Read | policy.List, ""},
		{"all", []string{"meta", "destroy", "delete", "write", "list", "read"}, policy.All, ""},
		{"case and spaces", []string{" Read ", "LIST", "wRiTe\t"}, policy.Read | policy.List | policy.Write, ""},
		{"duplicates", []string{"read", "read", "READ"}, policy.Read, ""},
		{"nil", nil, 0, "permissions: must not be empty; " + valid},
		{"empty list", []string{}, 0, "permissions: must not be empty; " + valid},
		{"unknown", []string{"read", "admin"}, 0, `permissions: unknown permission "admin"; ` + valid},
		{"empty name", []string{""}, 0, `permissions: unknown permission ""; ` + valid},
		{"comma list in one name", []string{"read,list"}, 0, `permissions: unknown permission "read,list"; ` + valid},
		{"plural", []string{"reads"}, 0, `permissions: unknown permission "reads"; ` + valid},
		{"all is no name", []string{"all"}, 0, `permissions: unknown permission "all"; ` + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := policy.ParsePerms(tt.names)
			if diff := cmp.Diff(tt.wantErr, result(t, err, "permissions")); diff != "" {
				t.Errorf("ParsePerms(%q) error mismatch (-want +got):\n%s", tt.names, diff)
			}
			if got != tt.want {
				t.Errorf("ParsePerms(%q) = %v, want %v", tt.names, got, tt.want)
			}
		})
	}
}

func TestPermNamesAndString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		perm      policy.Perm
		wantNames []string
		wantStr   string
	}{
		{0, nil, "none"},
		{policy.Read, []string{"read"}, "read"},
		{policy.List | policy.Read, []string{"read", "list"}, "read,list"},
		{policy.Meta | policy.Write, []string{"write", "meta"}, "write,meta"},
		{policy.All, []string{"read", "list", "write", "delete", "destroy", "meta"}, "read,list,write,delete,destroy,meta"},
		{policy.Destroy | 0x80, []string{"destroy"}, "destroy,0x80"},
		{0xc0, nil, "0xc0"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.wantNames, tt.perm.Names()); diff != "" {
			t.Errorf("Perm(%#x).Names() mismatch (-want +got):\n%s", uint8(tt.perm), diff)
		}
		if got := tt.perm.String(); got != tt.wantStr {
			t.Errorf("Perm(%#x).String() = %q, want %q", uint8(tt.perm), got, tt.wantStr)
		}
	}
}

func TestPermNamesRoundTrip(t *testing.T) {
	t.Parallel()
	for p := policy.Perm(1); p <= policy.All; p++ {
		got, err := policy.ParsePerms(p.Names())
		if err != nil || got != p {
			t.Errorf("ParsePerms(%v.Names()) = %v, %v; want %v", p, got, err, p)
		}
	}
}

func TestPermHas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p, q policy.Perm
		want bool
	}{
		{policy.All, policy.Read, true},
		{policy.Read | policy.List, policy.Read | policy.List, true},
		{policy.Read, policy.Read | policy.List, false},
		{policy.List, policy.Read, false},
		{0, 0, true},
		{policy.Read, 0, true},
		{0, policy.Read, false},
	}
	for _, tt := range tests {
		if got := tt.p.Has(tt.q); got != tt.want {
			t.Errorf("%v.Has(%v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}
