// Package harden makes the Keeper process a poorer place to steal keys
// from: no core dumps, not dumpable (other processes of the same user can
// neither ptrace it nor read its memory through /proc), and its memory
// locked in RAM so that keys are not written to swap. Only Linux is
// hardened; elsewhere Apply does nothing and says so.
package harden

import (
	"fmt"
	"log/slog"
)

// Report says what Apply achieved, for the log and for a status page.
type Report struct {
	// NoCoreDumps is true when RLIMIT_CORE is 0: a crash writes no core
	// file holding keys.
	NoCoreDumps bool
	// NotDumpable is true when the process is not dumpable
	// (PR_SET_DUMPABLE 0): no core dumps even if the limit is raised, and
	// only root may ptrace it or read its memory through /proc.
	NotDumpable bool
	// MemoryLocked is true when all memory, present and future, is locked
	// in RAM (mlockall): keys are never written to swap.
	MemoryLocked bool
	// Problems says, one sentence each, what could not be done, why and
	// how to allow it. It is empty when all of the above are true.
	Problems []string
}

// unlockedAdvice ends the problem reported when memory is not locked.
const unlockedAdvice = "keys may be written to swap; allow locking with the IPC_LOCK capability " +
	"(Kubernetes: securityContext.capabilities.add: [IPC_LOCK]; Docker: --cap-add IPC_LOCK) " +
	"or an unlimited memlock limit (systemd: LimitMEMLOCK=infinity; shell: ulimit -l unlimited), " +
	"or run without swap or with encrypted swap"

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// logReport logs r: one line when all went well, else one warning per
// problem.
func logReport(log *slog.Logger, r Report) {
	if len(r.Problems) == 0 {
		log.Info("process hardened", slog.Bool("no_core_dumps", r.NoCoreDumps),
			slog.Bool("not_dumpable", r.NotDumpable), slog.Bool("memory_locked", r.MemoryLocked))
		return
	}
	for _, p := range r.Problems {
		log.Warn("process hardening incomplete", slog.String("problem", p))
	}
}
