//go:build !linux

package harden

import (
	"log/slog"
	"runtime"
)

// Apply does nothing outside Linux, where SPIKE is built and run: it
// reports that the process is not hardened.
func Apply(log *slog.Logger) Report {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var r Report
	r.problem("process hardening is not implemented on %s: core dumps stay enabled and %s", runtime.GOOS, unlockedAdvice)
	logReport(log, r)
	return r
}
