// Package cli is the spike command tree: it parses the command line, reads
// passwords, calls Nexus and renders the answers to the given streams.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
)

// defaultTimeout bounds one command's work against Nexus: loading the SVID
// and one RPC.
const defaultTimeout = 30 * time.Second

// Program is the spike command line bound to one process: its version,
// environment and standard streams.
type Program struct {
	// Version is the Pilot version printed by `spike version`.
	Version string
	// Getenv reads the environment; only LoadConfig calls it.
	Getenv func(string) string
	// Stdin supplies passwords; a terminal gets a no-echo prompt.
	Stdin io.Reader
	// Stdout receives command output.
	Stdout io.Writer
	// Stderr receives prompts and error messages.
	Stderr io.Writer
	// Environ is the environment `spike run` passes on to its command;
	// nil passes none.
	Environ func() []string

	// dial connects to Nexus, building the clients with opts. Nil means
	// the real transport: SVID and mutual TLS from the environment. Tests
	// replace it.
	dial func(ctx context.Context, opts ...connect.ClientOption) (*nexus, error)
	// now tells the time that durations like --since 1h count back from.
	// Nil means time.Now. Tests replace it.
	now func() time.Time
}

// Run executes args (without the program name) and returns the exit code:
// 0 on success, 1 for a usage or local error, 2 when Nexus refused the
// request, 3 when the request may or may not have been applied. Errors are printed to Stderr as "spike: <message>".
func (p *Program) Run(ctx context.Context, args []string) int {
	inv := &invocation{p: p}
	root := inv.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var child exitCodeError
	if errors.As(err, &child) {
		return child.code // spike run's command's, or status while sealed
	}
	code := exitCode(err)
	switch {
	case err == nil:
	case inv.output == formatJSON:
		// A program reading -o json reads the error the same way.
		writeJSONError(p.Stderr, err, code)
	default:
		fmt.Fprintf(p.Stderr, "spike: %s\n", errorMessage(err))
	}
	return code
}

// invocation holds the state of one Run: the program, the values of the
// persistent flags and the configuration once read.
type invocation struct {
	p       *Program
	output  string
	timeout time.Duration
	cfg     *Config
}

const rootLong = `spike administers a SPIKE secrets store. It initialises and unseals SPIKE,
reports its state, reads and writes versioned secrets, manages the policies
that let workloads read them and reads and verifies the audit trail of every
request, talking to Nexus over SPIFFE mutual TLS with Pilot's own SVID.

Admin commands need an admin token as well as the admin SVID: log in with
the admin password ('spike login'; 'spike operator init' logs you in too).
The token is kept in a file only you can read, sent with later requests,
and revoked by 'spike logout'.

Output is a table for people by default; -o json and -o yaml print the same
data for programs, and 'spike secret get' also has -o env and --field.
With -o json an error is one JSON object on stderr:
{"code": "not_found", "message": "...", "exit": 2} (code: Nexus's, or
"usage" or "local" for a mistake or failure on this side).

Environment:
  SPIKE_NEXUS_URL         Nexus API URL (default https://127.0.0.1:8553)
  SPIKE_NEXUS_ID          SPIFFE ID Nexus must present
                          (default spiffe://<trust domain>/spike/nexus)
  SPIKE_TRUST_DOMAIN      SPIFFE trust domain (default spike.local)
  SPIFFE_ENDPOINT_SOCKET  SPIFFE Workload API socket; when set, the SVID and
                          trust bundle come from it
  SPIKE_SVID_CERT         PEM file with Pilot's X.509 SVID (without a socket)
  SPIKE_SVID_KEY          PEM file with the SVID's private key
  SPIKE_TRUST_BUNDLE      PEM file with the trust bundle
  SPIKE_TOKEN_FILE        where the admin token is kept (default
                          ~/.spike/token, mode 0600)

For the local stack started with 'make up', set them all with:
  . ./.spike/env

Shell completion: see 'spike completion --help'.

Exit codes: 0 success, 1 usage or local error (including when Nexus cannot
be reached), 2 Nexus refused the request, 3 the outcome is unknown: the
request may or may not have been applied (the connection broke after it was
sent, or Nexus could not tell whether its commit landed).`

func (inv *invocation) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "spike",
		Short: "Administer a SPIKE secrets store",
		Long:  rootLong,
		Example: `  . ./.spike/env
  echo 'correct horse battery staple' | spike operator init
  spike operator status
  spike login --ttl 1h
  spike secret put apps/demo/db user=admin pass=@./db-password.txt
  spike secret get apps/demo/db --field pass
  spike secret list apps/
  spike secret get apps/demo/db -o json
  spike policy put web --spiffe-id spiffe://spike.local/app/web --path 'apps/web/**' --perm read
  spike audit list --since 1h
  spike audit verify
  spike logout
  source <(spike completion bash)`,
		Version:       inv.p.Version,
		Args:          noSubcommand,
		RunE:          showHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return inv.checkFlags(cmd)
		},
	}
	root.SetVersionTemplate("spike {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{command: cmd.CommandPath(), err: err}
	})
	flags := root.PersistentFlags()
	flags.StringVarP(&inv.output, "output", "o", formatTable, "output `format`: table, json, yaml or env (env: 'secret get' only)")
	flags.DurationVar(&inv.timeout, "timeout", defaultTimeout, "how long to wait for Nexus")

	root.AddCommand(
		inv.agentCommand(),
		inv.auditCommand(),
		inv.loginCommand(),
		inv.logoutCommand(),
		inv.operatorCommand(),
		inv.policyCommand(),
		inv.runCommand(),
		inv.secretCommand(),
		inv.versionCommand(),
	)
	root.SetIn(inv.p.Stdin)
	root.SetOut(inv.p.Stdout)
	root.SetErr(inv.p.Stderr)
	addBuiltins(root) // after SetOut: the completion commands keep the writer
	return root
}

// annotationEnv marks the commands that support -o env.
const annotationEnv = "spike/output-env"

// checkFlags validates the persistent flags before any command runs.
func (inv *invocation) checkFlags(cmd *cobra.Command) error {
	switch inv.output {
	case formatTable, formatJSON, formatYAML:
	case formatEnv:
		if cmd.Annotations[annotationEnv] != "true" {
			return usageErrorf(cmd, "-o env prints a secret's keys as shell variables; only 'spike secret get' supports it")
		}
	default:
		return usageErrorf(cmd, "unknown output format %q: use table, json, yaml or env", inv.output)
	}
	if inv.timeout <= 0 {
		return usageErrorf(cmd, "--timeout must be positive, got %s", inv.timeout)
	}
	return nil
}

// groupCommand returns a command that only holds subcommands: without
// arguments it prints its help, with an unknown one it is a usage error.
func groupCommand(use, short, example string, children ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    noSubcommand,
		RunE:    showHelp,
	}
	cmd.AddCommand(children...)
	return cmd
}

func showHelp(cmd *cobra.Command, _ []string) error {
	return cmd.Help()
}
