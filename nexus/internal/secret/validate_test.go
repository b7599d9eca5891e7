package secret

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

func keys(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		err   error
		field string // "" means valid
	}{
		{"custom: none", ValidateCustomMetadata(nil), ""},
		{"custom: at the key limit", ValidateCustomMetadata(keys(MaxCustomKeys)), ""},
		{"custom: over the key limit", ValidateCustomMetadata(keys(MaxCustomKeys + 1)), "custom_metadata"},
		{"custom: value at the limit", ValidateCustomMetadata(map[string]string{"k": strings.Repeat("v", MaxCustomValueLen)}), ""},
		{"custom: value over the limit", ValidateCustomMetadata(map[string]string{"k": strings.Repeat("v", MaxCustomValueLen+1)}), "custom_metadata"},
		{"custom: bad key", ValidateCustomMetadata(map[string]string{"a b": "v"}), "custom_metadata"},
		{"custom: empty key", ValidateCustomMetadata(map[string]string{"": "v"}), "custom_metadata"},
		{"custom: invalid UTF-8", ValidateCustomMetadata(map[string]string{"k": "\xff"}), "custom_metadata"},
		{"versions: none (latest)", ValidateVersions(nil), ""},
		{"versions: at the limit", ValidateVersions(make([]int64, MaxVersionsPerRequest)), "versions"}, // zeros are not versions
		{"versions: over the limit", ValidateVersions(make([]int64, MaxVersionsPerRequest+1)), "versions"},
		{"versions: positive", ValidateVersions([]int64{1, 2, 3}), ""},
		{"versions: negative", ValidateVersions([]int64{-1}), "versions"},
		{"version: latest", ValidateVersion(0), ""},
		{"version: negative", ValidateVersion(-2), "version"},
		{"cas: create only", ValidateCAS(0), ""},
		{"cas: negative", ValidateCAS(-1), "cas"},
		{"max versions: default", ValidateMaxVersions(0), ""},
		{"max versions: at the limit", ValidateMaxVersions(MaxMaxVersions), ""},
		{"max versions: over the limit", ValidateMaxVersions(MaxMaxVersions + 1), "max_versions"},
		{"max versions: negative", ValidateMaxVersions(-1), "max_versions"},
	}
	for _, tt := range tests {
		if tt.field == "" {
			if tt.err != nil {
				t.Errorf("%s: unexpected error %v", tt.name, tt.err)
			}
			continue
		}
		if fault.CodeOf(tt.err) != fault.Invalid || !strings.HasPrefix(tt.err.Error(), tt.field+":") {
			t.Errorf("%s: error = %v, want fault.Invalid naming %s", tt.name, tt.err, tt.field)
		}
	}
}

func TestPageSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      int32
		want    int
		wantErr bool
	}{
		{0, DefaultPageSize, false}, {1, 1, false}, {MaxPageSize, MaxPageSize, false},
		{MaxPageSize + 1, 0, true}, {-1, 0, true},
	} {
		got, err := PageSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("PageSize(%d) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "page_size:") {
			t.Errorf("PageSize(%d) error %q does not name page_size", tt.in, err)
		}
	}
}
