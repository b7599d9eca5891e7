package pgtest

import (
	"strings"
	"testing"
)

func TestFindBinaryMissing(t *testing.T) {
	t.Parallel()
	_, err := findBinary("pgtest-no-such-binary")
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql-15") {
		t.Errorf("findBinary of a missing binary: error = %v, want install instructions", err)
	}
}
