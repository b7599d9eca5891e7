//go:build !linux

package cli

import (
	"os"
	"testing"
)

// openTerminal fails the test: SPIKE is built and tested on Linux, where
// the terminal prompt tests open a real pseudo-terminal.
func openTerminal(t *testing.T) (master, tty *os.File) {
	t.Helper()
	t.Fatal("the terminal prompt tests open a pseudo-terminal, which this test helper supports on Linux only")
	return nil, nil
}
