//go:build !linux

package cli

import (
	"os"
	"testing"
)

// openTerminal skips the test: pseudo-terminals are opened on Linux only.
func openTerminal(t *testing.T) (master, tty *os.File) {
	t.Helper()
	t.Skip("pseudo-terminals in tests need Linux")
	return nil, nil
}
