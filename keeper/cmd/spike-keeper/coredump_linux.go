package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// disableCoreDumps keeps the root keyring out of core files.
func disableCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("disable core dumps: %w", err)
	}
	return nil
}
