package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// exitCodeError is an exit code that is not an error of spike's, so
// nothing is printed for it: `spike run` passes on its command's, and
// `spike operator status` exits 2 while SPIKE is sealed.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("command exited with code %d", e.code) }

// forwarded are the signals `spike run` passes on to its command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

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

spike passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
SIGWINCH on to the command, waits for it, and exits with its exit code
(128 + the signal's number when a signal ended it). The secrets are read
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
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)
	defer signal.Stop(signals)
	if err := child.Start(); err != nil {
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	for {
		select {
		case sig := <-signals:
			_ = child.Process.Signal(sig) // it may have exited meanwhile
		case err := <-done:
			return childResult(err)
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
