package cli

import (
	"errors"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Values of siginfo's si_code for SIGCHLD (<signal.h>).
const cldStopped = 5

// watchChild reports the command's stops (only with a terminal) on stopped
// and its exit by closing exited, without reaping it: reap does, with
// exec.Cmd.Wait. Until then the command's group still exists, so takeBack
// can name it.
func (jc jobControl) watchChild(child *exec.Cmd, stopped chan<- struct{}) (exited <-chan struct{}, reap func() error) {
	done := make(chan struct{})
	go jc.waitChild(child.Process.Pid, stopped, done)
	return done, child.Wait
}

func (jc jobControl) waitChild(pid int, stopped chan<- struct{}, exited chan<- struct{}) {
	defer close(exited)
	opts := unix.WEXITED | unix.WNOWAIT
	if jc.tty >= 0 {
		opts |= unix.WSTOPPED
	}
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, opts, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return // not our child any more: Wait says why
		case info.Code != cldStopped:
			return
		}
		// Consume the stop, which WNOWAIT left to be waited for.
		_ = unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WNOHANG, nil)
		select {
		case stopped <- struct{}{}:
		default: // one pending report is enough
		}
	}
}
