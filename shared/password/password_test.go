package password

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheckLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n  int
		ok bool
	}{{0, false}, {MinLen - 1, false}, {MinLen, true}, {MaxLen, true}, {MaxLen + 1, false}}
	for _, tt := range tests {
		pw := bytes.Repeat([]byte{'s'}, tt.n)
		err := CheckLength(pw)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLength(%d bytes) = %v, want ok %v", tt.n, err, tt.ok)
		}
		if err != nil && tt.n > 0 && strings.Contains(err.Error(), string(pw)) {
			t.Errorf("error %q contains the password", err)
		}
	}
}
