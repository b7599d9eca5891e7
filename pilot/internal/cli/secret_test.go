package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePairs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr string
	}{
		{name: "one pair", args: []string{"user=admin"}, want: map[string]string{"user": "admin"}},
		{
			name: "several pairs",
			args: []string{"user=admin", "pass=s3cr3t"},
			want: map[string]string{"user": "admin", "pass": "s3cr3t"},
		},
		{
			name: "value keeps later equals signs",
			args: []string{"dsn=postgres://db?sslmode=require&x=y", "b64=YWJj=="},
			want: map[string]string{"dsn": "postgres://db?sslmode=require&x=y", "b64": "YWJj=="},
		},
		{name: "empty value", args: []string{"empty="}, want: map[string]string{"empty": ""}},
		{name: "value is only equals", args: []string{"k=="}, want: map[string]string{"k": "="}},
		{name: "spaces kept", args: []string{"greeting= hello world "}, want: map[string]string{"greeting": " hello world "}},
		{name: "empty key", args: []string{"user=admin", "=s3cr3t"}, wantErr: "pair 2 has an empty key"},
		{name: "no equals sign", args: []string{"s3cr3t"}, wantErr: "pair 1 is not KEY=VALUE"},
		{name: "duplicate key", args: []string{"user=a", "user=b"}, wantErr: `key "user" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parsePairs(tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parsePairs(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q reveals a value", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePairs(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parsePairs(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}
