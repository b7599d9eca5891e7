package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// exitCodeError is an exit code that is not an error of spike's, so
// nothing is printed for it: `spike run` passes on its command's, and
// `spike operator status` exits 2 while SPIKE is sealed.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("command exited with code %d", e.code) }

// forwarded are the signals `spike run` passes on to its command.
// SIGTSTP and SIGCONT are passed on too (see runChild): spike itself never
// stops for SIGTSTP, the command does.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGTSTP, syscall.SIGCONT}

func (inv *invocation) runCommand() *cobra.Command {
	var secrets []string
	cmd := &cobra.Command{
		Use:   "run --secret PATH[:PREFIX]... -- COMMAND [ARG...]",
		Short: "Run a command with secrets in its environment",
		Long: `run reads each secret given with --secret (its latest version) and starts
COMMAND, without a shell, with every key of every secret as an environment
variable: KEY, or PREFIX followed by KEY when the secret is given as
PATH:PREFIX. The rest of the environment is passed on as it is; a secret's
variable replaces an inherited one of the same name.

A name that is not a valid environment variable name (letters, digits and
'_', not starting with a digit: keys with '.' or '-' are not) is refused,
as is a name that two secrets would both set. Nothing is started then.

The command runs in a process group of its own, so that it gets each
signal once. spike passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
SIGUSR2, SIGWINCH, SIGTSTP and SIGCONT on to it, waits for it, and exits
with its exit code (128 + the signal's number when a signal ended it). On
a terminal the command's group is the foreground group while it runs:
Ctrl-C and Ctrl-\ reach it directly, it can read the terminal, and Ctrl-Z
stops it and spike together (fg and bg continue both). The secrets are read
with the caller's own SVID: a workload needs a policy that lets it read
them, an admin its token.`,
		Example: `  spike run --secret apps/web/db -- ./server --port 8080
  spike run --secret apps/web/db:DB_ --secret apps/web/api:API_ -- env`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 {
				return usageErrorf(cmd, "put the command after --: spike run --secret PATH -- COMMAND [ARG...]")
			}
			if len(secrets) == 0 {
				return usageErrorf(cmd, "--secret PATH[:PREFIX] is required at least once")
			}
			vars, err := inv.secretEnv(cmd.Context(), secrets)
			if err != nil {
				return err
			}
			return inv.runChild(args, vars)
		},
	}
	cmd.Flags().StringArrayVar(&secrets, "secret", nil, "a secret to put in the environment: PATH, or PATH:PREFIX to prefix its keys")
	return cmd
}

// secretEnv reads the secrets and returns the variables they make.
func (inv *invocation) secretEnv(ctx context.Context, specs []string) (map[string]string, error) {
	n, err := inv.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	vars := map[string]string{}
	from := map[string]string{}
	for _, spec := range specs {
		path, prefix, _ := strings.Cut(spec, ":")
		if path == "" {
			return nil, fmt.Errorf("--secret %q: the path is empty", spec)
		}
		var data map[string]string
		err := inv.call(ctx, n, func(ctx context.Context) error {
			resp, err := n.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
			if err == nil {
				data = resp.Msg.GetSecret().GetData()
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			name := prefix + k
			switch {
			case !shellName(name):
				return nil, fmt.Errorf("secret %s: %q is not a valid environment variable name (letters, digits and '_', not starting with a digit): rename the key, or give a prefix", path, name)
			case from[name] != "":
				return nil, fmt.Errorf("secrets %s and %s both set %s: give one of them a prefix (PATH:PREFIX)", from[name], path, name)
			case strings.IndexByte(data[k], 0) >= 0:
				return nil, fmt.Errorf("secret %s: the value of %s holds a NUL byte, which an environment variable cannot hold", path, k)
			}
			vars[name], from[name] = data[k], path
		}
	}
	return vars, nil
}

// runChild starts args with vars added to the environment, passes signals
// on, and returns its exit as a exitCodeError.
//
// The command runs in a process group of its own. A signal sent to a
// whole process group (a terminal's Ctrl-C, a supervisor's kill -- -PGID)
// reaches the command once, whichever group it names: spike's group holds
// spike alone, which passes the signal on, and the command's group holds
// no one else's signals. Had the command stayed in spike's group it would
// get such a signal twice, from the sender and from spike.
//
// When spike's stdin is its controlling terminal and spike's group is the
// terminal's foreground group, the command's group becomes the foreground
// group instead: Ctrl-C and Ctrl-\ then reach only the command, once, and
// an interactive program (psql) can read the terminal. spike takes the
// terminal back when the command exits. Ctrl-Z stops the command's group;
// spike then takes the terminal back and stops its own group, so that the
// shell sees the job stopped; when the shell continues it (fg, bg), spike
// gives the terminal to the command again if its group is in the
// foreground and continues the command's group (see jobControl).
func (inv *invocation) runChild(args []string, vars map[string]string) error {
	var inherited []string
	if inv.p.Environ != nil {
		inherited = inv.p.Environ()
	}
	var env []string
	for _, kv := range inherited {
		name, _, _ := strings.Cut(kv, "=")
		if _, set := vars[name]; !set {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, k+"="+vars[k])
	}
	child := exec.Command(args[0], args[1:]...) //nolint:gosec // running the caller's command is the point
	child.Env = env
	child.Stdin, child.Stdout, child.Stderr = inv.p.Stdin, inv.p.Stdout, inv.p.Stderr
	jc := newJobControl(inv.p.Stdin)
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if jc.inForeground() {
		// The child makes its group the foreground group before exec
		// (Ctty is spike's descriptor of the terminal).
		child.SysProcAttr.Foreground, child.SysProcAttr.Ctty = true, jc.tty
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)
	defer signal.Stop(signals)
	if err := child.Start(); err != nil {
		// A child that failed after making its group the foreground
		// group leaves the terminal to a group that is gone.
		jc.takeBack(-1)
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	pid := child.Process.Pid
	stopped := make(chan struct{}, 1)
	exited, reap := jc.watchChild(child, stopped)
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGCONT {
				// Continued (after a stop, or just told to): the
				// command's whole group continues too.
				jc.resume(pid)
				_ = syscall.Kill(-pid, syscall.SIGCONT) // it may have exited meanwhile
				continue
			}
			_ = child.Process.Signal(sig) // it may have exited meanwhile
		case <-stopped:
			jc.suspend(pid)
		case <-exited:
			jc.takeBack(pid)
			return childResult(reap())
		}
	}
}

// childResult turns the command's end into spike's exit.
func childResult(err error) error {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			return exitCodeError{code: 128 + int(status.Signal())}
		}
		return exitCodeError{code: exit.ExitCode()}
	}
	return fmt.Errorf("wait for the command: %w", err)
}

// jobControl is what spike does with its controlling terminal while the
// command runs; with tty < 0 (stdin is not spike's controlling terminal:
// a pipe, a file, a supervisor) it does nothing, and a stopped command
// stays stopped until someone continues it.
type jobControl struct {
	tty  int // spike's descriptor of the terminal, or -1
	pgrp int // spike's process group
}

// newJobControl looks at stdin: a terminal whose foreground group can be
// read is spike's controlling terminal.
func newJobControl(stdin io.Reader) jobControl {
	jc := jobControl{tty: -1, pgrp: syscall.Getpgrp()}
	f, ok := stdin.(*os.File)
	if !ok {
		return jc
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil {
		jc.tty = fd
	}
	return jc
}

// foreground returns the terminal's foreground group (0 without one).
func (jc jobControl) foreground() int {
	if jc.tty < 0 {
		return 0
	}
	pgrp, err := unix.IoctlGetInt(jc.tty, unix.TIOCGPGRP)
	if err != nil {
		return 0
	}
	return pgrp
}

// inForeground says whether spike's group is the terminal's foreground
// group: only then does the command get the terminal (a command started
// in the background stays there, as spike was).
func (jc jobControl) inForeground() bool {
	return jc.tty >= 0 && jc.foreground() == jc.pgrp
}

// setForeground makes pgrp the terminal's foreground group. spike may be
// in the background then, so SIGTTOU, which would stop it, is ignored
// meanwhile (the command was already started and keeps its own
// disposition).
func (jc jobControl) setForeground(pgrp int) {
	if !signal.Ignored(syscall.SIGTTOU) {
		signal.Ignore(syscall.SIGTTOU)
		defer signal.Reset(syscall.SIGTTOU)
	}
	_ = unix.IoctlSetPointerInt(jc.tty, unix.TIOCSPGRP, pgrp) // nothing better to do if the terminal is gone
}

// takeBack makes spike's group the foreground group again when the
// command's group (pid; -1: any group but spike's, after a failed start)
// holds the terminal.
func (jc jobControl) takeBack(pid int) {
	if jc.tty < 0 {
		return
	}
	if fg := jc.foreground(); fg != 0 && (fg == pid || (pid < 0 && fg != jc.pgrp)) {
		jc.setForeground(jc.pgrp)
	}
}

// suspend follows a stop of the command (Ctrl-Z, SIGTTIN...): spike takes
// the terminal back and stops its own group, so that the shell sees its
// job stopped and gets the terminal. SIGSTOP, because SIGTSTP is passed
// on rather than obeyed.
func (jc jobControl) suspend(pid int) {
	if jc.tty < 0 {
		return
	}
	jc.takeBack(pid)
	_ = syscall.Kill(0, syscall.SIGSTOP)
}

// resume follows a SIGCONT: when spike's group is in the foreground (fg),
// the command's group gets the terminal again; in the background (bg) it
// runs there.
func (jc jobControl) resume(pid int) {
	if jc.inForeground() {
		jc.setForeground(pid)
	}
}
