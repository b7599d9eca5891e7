package cli

import (
	"os"
	"testing"

	"github.com/spike-dev/spike/shared/testkit/ptytest"
)

// openTerminal opens a pseudo-terminal: what is written to master is read
// from tty, which is a terminal. Both are closed when the test ends.
func openTerminal(t *testing.T) (master, tty *os.File) {
	t.Helper()
	return ptytest.Open(t)
}
