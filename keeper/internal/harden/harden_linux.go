//go:build linux

package harden

import (
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// Apply disables core dumps, makes the process not dumpable and, where
// that is safe, locks all its memory. It never fails: what it could not do
// is in the Report and logged as a warning. Call it once, early in main,
// before any key is in memory.
func Apply(log *slog.Logger) Report {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var r Report
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		r.problem("core dumps not disabled: setrlimit RLIMIT_CORE 0: %v", err)
	} else {
		r.NoCoreDumps = true
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		r.problem("process still dumpable: prctl PR_SET_DUMPABLE 0: %v", err)
	} else {
		r.NotDumpable = true
	}
	if err := lockMemory(); err != nil {
		r.problem("memory not locked: %v; %s", err, unlockedAdvice)
	} else {
		r.MemoryLocked = true
	}
	logReport(log, r)
	return r
}

// lockMemory locks all present and future memory, if it is safe to.
func lockMemory() error {
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &limit); err != nil {
		return fmt.Errorf("getrlimit RLIMIT_MEMLOCK: %w", err)
	}
	if err := lockAllowed(limit.Cur, hasIPCLock()); err != nil {
		return err
	}
	// MCL_ONFAULT locks pages when first touched instead of populating
	// every mapping now, which would make the runtime's untouched heap
	// resident. Kernels before 4.4 refuse it with EINVAL.
	err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE)
	}
	if err != nil {
		return fmt.Errorf("mlockall: %w", err)
	}
	return nil
}

// errLimited refuses to lock memory under a finite RLIMIT_MEMLOCK.
var errLimited = errors.New("no IPC_LOCK capability and a finite RLIMIT_MEMLOCK")

// lockAllowed reports whether mlockall(MCL_CURRENT|MCL_FUTURE) is safe
// with the soft RLIMIT_MEMLOCK limit and the IPC_LOCK capability. Locked
// mappings count at their full virtual size, and the Go runtime reserves
// and maps its heap in large pieces: under a finite limit (8 MiB by
// default) either mlockall fails at once or, worse, a later heap growth
// fails and the runtime dies with "out of memory". So only IPC_LOCK,
// which lifts the limit, or an unlimited limit will do.
func lockAllowed(limit uint64, ipcLock bool) error {
	if ipcLock || limit == unix.RLIM_INFINITY {
		return nil
	}
	return fmt.Errorf("%w (%d bytes)", errLimited, limit)
}

// hasIPCLock reports whether CAP_IPC_LOCK is in the effective set.
func hasIPCLock() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_IPC_LOCK) != 0
}
