package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// maxPIDFileBytes bounds a pid file: a number and a newline.
const maxPIDFileBytes = 64

// action is what a template asks for when its file changed: a command, a
// signal, or both. Templates that ask for the same action share one run.
type action struct {
	command []string
	timeout time.Duration
	pidFile string
	signal  syscall.Signal
}

func (a action) equal(b action) bool {
	return slices.Equal(a.command, b.command) && a.timeout == b.timeout && a.pidFile == b.pidFile && a.signal == b.signal
}

// logAttrs describe the action in a log line.
func (a action) logAttrs() []any {
	var attrs []any
	if len(a.command) > 0 {
		attrs = append(attrs, "command", a.command)
	}
	if a.pidFile != "" {
		attrs = append(attrs, "signal", a.signal.String(), "pid_file", a.pidFile)
	}
	return attrs
}

func (a action) empty() bool { return len(a.command) == 0 && a.pidFile == "" }

func actionOf(t Template) action {
	return action{command: t.Command, timeout: t.CommandTimeout, pidFile: t.PIDFile, signal: t.Signal}
}

// run runs the command (without a shell, its output to out) and then
// sends the signal.
func (a action) run(ctx context.Context, out io.Writer) error {
	var errs []error
	if len(a.command) > 0 {
		ctx, cancel := context.WithTimeout(ctx, a.timeout)
		cmd := exec.CommandContext(ctx, a.command[0], a.command[1:]...) //nolint:gosec // the operator's configured command is the point
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("killed after %s", a.timeout)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("command %s: %w", a.command[0], err))
		}
	}
	if a.pidFile != "" {
		if err := signalPIDFile(a.pidFile, a.signal); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// signalPIDFile sends sig to the process whose pid pidFile holds.
func signalPIDFile(pidFile string, sig syscall.Signal) error {
	f, err := os.Open(pidFile)
	if err != nil {
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPIDFileBytes+1))
	if err != nil {
		return fmt.Errorf("signal %s: read %s: %w", sig, pidFile, err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data)))
	if err != nil || len(data) > maxPIDFileBytes {
		return fmt.Errorf("signal %s: %s does not hold a pid", sig, pidFile)
	}
	if pid <= 1 {
		return fmt.Errorf("signal %s: %s holds pid %d, which the agent never signals", sig, pidFile, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s to pid %d (from %s): %w", sig, pid, pidFile, err)
	}
	return nil
}
