package secret_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// result reduces an error to what the tests compare: "" for nil, otherwise
// the message, which must come from a fault.Invalid error.
func result(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	if got := fault.CodeOf(err); got != fault.Invalid {
		t.Errorf("error %q has code %v, want fault.Invalid", err, got)
	}
	return err.Error()
}

func TestValidatePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
		want string
	}{
		{"single segment", "db", ""},
		{"nested", "apps/billing/db-password", ""},
		{"all allowed characters", "A-Z_a-z.0-9/x", ""},
		{"dot inside segment", "a/.env/v1.2", ""},
		{"dots in longer segment", "a/..b/c...", ""},
		{"max length", strings.Repeat("a", secret.MaxPathLen), ""},
		{"max length with segments", strings.Repeat("ab/", 170) + "ab", ""},
		{"empty", "", "path: must not be empty"},
		{"too long", strings.Repeat("a", secret.MaxPathLen+1), "path: must be at most 512 bytes, got 513"},
		{"leading slash", "/a/b", "path: must not start with '/'"},
		{"only slash", "/", "path: must not start with '/'"},
		{"trailing slash", "a/b/", "path: must not end with '/'"},
		{"empty segment", "a//b", `path: must not contain empty segments ("//")`},
		{"dotdot segment", "a/../b", `path: must not contain ".." segments`},
		{"dotdot alone", "..", `path: must not contain ".." segments`},
		{"dotdot last", "a/..", `path: must not contain ".." segments`},
		{"dot segment", "a/./b", `path: must not contain "." segments`},
		{"dot alone", ".", `path: must not contain "." segments`},
		{"NUL", "a\x00b", "path: must not contain control characters (byte 1)"},
		{"newline", "a/b\n", "path: must not contain control characters (byte 3)"},
		{"DEL", "a\x7f", "path: must not contain control characters (byte 1)"},
		{"space", "a b", "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
		{"backslash", `a\b`, "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
		{"percent", "a%2e", "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
		{"LIKE wildcard", "a_%", "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 2)"},
		{"non-ASCII", "caf\u00e9", "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 3)"},
		{"invalid UTF-8", "a\xff", "path: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, result(t, secret.ValidatePath(tt.path))); diff != "" {
				t.Errorf("ValidatePath(%q) error mismatch (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix string
		want   string
	}{
		{"empty lists all", "", ""},
		{"partial segment", "ap", ""},
		{"trailing slash", "apps/", ""},
		{"full path", "apps/billing/db", ""},
		{"max length", strings.Repeat("a", secret.MaxPathLen-1) + "/", ""},
		{"too long", strings.Repeat("a", secret.MaxPathLen+1), "prefix: must be at most 512 bytes, got 513"},
		{"only slash", "/", "prefix: must not start with '/'"},
		{"leading slash", "/apps", "prefix: must not start with '/'"},
		{"double trailing slash", "apps//", `prefix: must not contain empty segments ("//")`},
		{"dotdot", "apps/../", `prefix: must not contain ".." segments`},
		{"dot last", "apps/.", `prefix: must not contain "." segments`},
		{"NUL", "\x00", "prefix: must not contain control characters (byte 0)"},
		{"wildcard", "a%", "prefix: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
		{"star", "a*", "prefix: may contain only letters, digits, '.', '_', '-' and '/' (byte 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, result(t, secret.ValidatePrefix(tt.prefix))); diff != "" {
				t.Errorf("ValidatePrefix(%q) error mismatch (-want +got):\n%s", tt.prefix, diff)
			}
		})
	}
}

func TestValidateData(t *testing.T) {
	t.Parallel()
	manyKeys := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m["k"+strings.Repeat("x", i/26)+string(rune('a'+i%26))] = "v"
		}
		return m
	}
	tests := []struct {
		name string
		data map[string]string
		want string
	}{
		{"one key", map[string]string{"password": "hunter2"}, ""},
		{"empty value", map[string]string{"k": ""}, ""},
		{"unicode value", map[string]string{"k": "gr\u00fc\u00dfe \U0001f511"}, ""},
		{"allowed key characters", map[string]string{"A-z_0.9": "v"}, ""},
		{"max keys", manyKeys(secret.MaxKeys), ""},
		{"max key length", map[string]string{strings.Repeat("k", secret.MaxKeyLen): "v"}, ""},
		{"max size", map[string]string{"k": strings.Repeat("v", secret.MaxDataSize-1)}, ""},
		{"nil", nil, "data: must have at least one key"},
		{"no keys", map[string]string{}, "data: must have at least one key"},
		{"too many keys", manyKeys(secret.MaxKeys + 1), "data: must have at most 256 keys, got 257"},
		{"empty key", map[string]string{"": "v"}, "data: keys must not be empty"},
		{
			"key too long",
			map[string]string{strings.Repeat("k", secret.MaxKeyLen+1): "v"},
			`data: key "kkkkkkkkkkkkkkkk"...: must be at most 128 bytes, got 129`,
		},
		{"key with slash", map[string]string{"a/b": "v"}, `data: key "a/b": may contain only letters, digits, '.', '_' and '-' (byte 1)`},
		{"key with NUL", map[string]string{"a\x00": "v"}, `data: key "a\x00": may contain only letters, digits, '.', '_' and '-' (byte 1)`},
		{"key with space", map[string]string{"a b": "v"}, `data: key "a b": may contain only letters, digits, '.', '_' and '-' (byte 1)`},
		{"value not UTF-8", map[string]string{"k": "\xff\xfe"}, `data: value of key "k" must be valid UTF-8`},
		{
			"too large",
			map[string]string{"a": strings.Repeat("v", secret.MaxDataSize/2), "b": strings.Repeat("v", secret.MaxDataSize/2)},
			"data: keys and values must total at most 524288 bytes, got 524290",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, result(t, secret.ValidateData(tt.data))); diff != "" {
				t.Errorf("ValidateData error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateDataHidesValues(t *testing.T) {
	t.Parallel()
	err := secret.ValidateData(map[string]string{"k": "s3cret\xff"})
	if err == nil {
		t.Fatal("ValidateData accepted invalid UTF-8")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows the value", err)
	}
}
