package cli

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

const valuesHelp = `Values:
  KEY=VALUE   the value as given; the split is at the first '=', so the
              value may contain '=' (it ends up in shell history, so prefer
              KEY="$VARIABLE" or the forms below for real secrets)
  KEY=@FILE   the exact contents of FILE, byte for byte (a PEM file keeps
              its final newline)
  KEY=-       all of stdin, byte for byte, a final newline included
              (echo adds one; printf '%s' "$V" does not); only one key
              can read stdin. A password piped to init, unseal or login
              is different: it is one line, and its newline is not part
              of it.
  -           instead of pairs: stdin holds one JSON object of string
              values, e.g. {"user":"admin","pass":"s3cr3t"}
  @FILE       instead of pairs: FILE holds one such JSON object

Values must be UTF-8 text; encode binary data first (e.g. with base64).
A value that starts with '@' or is exactly '-' can be given with KEY=- or
in the JSON object.`

const casHelp = `With --cas N the write succeeds only if the secret's current version is N
(--cas 0: only if the secret has no version yet), so a concurrent writer is
never overwritten unnoticed; without --cas there is no check, unless the
secret requires one (see 'spike secret metadata put --cas-required').`

func (inv *invocation) putCommand() *cobra.Command {
	var cas int64
	cmd := &cobra.Command{
		Use:   "put PATH {KEY=VALUE | KEY=@FILE | KEY=-}... | put PATH - | put PATH @FILE",
		Short: "Store key/value pairs as a new version of a secret",
		Long: `put stores the given key/value pairs as a new version of the secret at PATH
and prints the version number. The new version holds exactly the given
pairs; to change some keys and keep the others, use 'spike secret patch'.
Nexus keeps the newest versions up to the secret's maximum and removes
older ones.

` + valuesHelp + `

` + casHelp,
		Example: `  spike secret put apps/demo/db user=admin pass="$DB_PASS"
  spike secret put apps/demo/tls cert=@./tls.crt key=@./tls.key
  pass-gen | spike secret put apps/demo/db user=admin pass=-
  echo '{"user":"admin","pass":"s3cr3t"}' | spike secret put apps/demo/db -
  spike secret put apps/demo/db --cas 0 user=admin pass="$DB_PASS"
  spike secret put apps/demo/db --cas 3 user=admin pass="$NEW_PASS" -o json`,
		Args:              argCount(2, -1, "PATH and at least one KEY=VALUE (or PATH - for JSON on stdin)"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			casPtr, err := casFlag(cmd, cas)
			if err != nil {
				return err
			}
			data, err := inv.readValues(cmd, args[1:])
			if err != nil {
				return err
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: args[0], Data: data, Cas: casPtr}))
				if err != nil {
					return err
				}
				return writePut(inv.p.Stdout, inv.output, resp.Msg)
			})
		},
	}
	cmd.Flags().Int64Var(&cas, "cas", 0, "write only if the current version is `N` (0: only if the secret has no version)")
	return cmd
}

func (inv *invocation) patchCommand() *cobra.Command {
	var cas int64
	cmd := &cobra.Command{
		Use:   "patch PATH {KEY=VALUE | KEY=@FILE | KEY=-}... | patch PATH - | patch PATH @FILE",
		Short: "Change some keys of a secret, keeping the others, as a new version",
		Long: `patch merges the given key/value pairs into the latest version of the secret
at PATH and stores the result as a new version: given keys are set, all
other keys keep their values. The secret must exist.

` + valuesHelp + `

` + casHelp,
		Example: `  spike secret patch apps/demo/db pass="$NEW_PASS"
  spike secret patch apps/demo/tls cert=@./renewed.crt
  spike secret patch apps/demo/db --cas 4 pass=- < ./new-password.txt
  echo '{"pass":"n3w"}' | spike secret patch apps/demo/db -`,
		Args:              argCount(2, -1, "PATH and at least one KEY=VALUE (or PATH - for JSON on stdin)"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			casPtr, err := casFlag(cmd, cas)
			if err != nil {
				return err
			}
			data, err := inv.readValues(cmd, args[1:])
			if err != nil {
				return err
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: args[0], Data: data, Cas: casPtr}))
				if err != nil {
					return err
				}
				return writeWritten(inv.p.Stdout, inv.output, "patched", writtenDoc{
					Path: resp.Msg.GetPath(), Version: resp.Msg.GetVersion(), CreatedAt: formatTime(resp.Msg.GetCreatedAt()),
				})
			})
		},
	}
	cmd.Flags().Int64Var(&cas, "cas", 0, "write only if the current version is `N`")
	return cmd
}

func (inv *invocation) rollbackCommand() *cobra.Command {
	var version, cas int64
	cmd := &cobra.Command{
		Use:   "rollback PATH --version N",
		Short: "Make an older version of a secret the latest again",
		Long: `rollback copies the data of version N of the secret at PATH into a new
version, which becomes the latest; the versions in between are kept. Version
N must still be retained and neither deleted nor destroyed. With --cas M the
rollback happens only if the secret's current version is M (required when
the secret requires check-and-set).`,
		Example: `  spike secret rollback apps/demo/db --version 2
  spike secret rollback apps/demo/db --version 2 --cas 5
  spike secret rollback apps/demo/db --version 2 -o json`,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case !cmd.Flags().Changed("version"):
				return usageErrorf(cmd, "rollback needs --version N: the version whose data becomes the new latest version")
			case version < 1:
				return usageErrorf(cmd, "--version must be a version number (1 or more), got %d", version)
			}
			casPtr, err := casFlag(cmd, cas)
			if err != nil {
				return err
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.RollbackSecret(ctx, connect.NewRequest(&nexusv1.RollbackSecretRequest{Path: args[0], Version: version, Cas: casPtr}))
				if err != nil {
					return err
				}
				return writeWritten(inv.p.Stdout, inv.output, "rolled back", writtenDoc{
					Path: resp.Msg.GetPath(), Version: resp.Msg.GetVersion(), CreatedAt: formatTime(resp.Msg.GetCreatedAt()), FromVersion: version,
				})
			})
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "the version `N` whose data becomes the new latest version (required)")
	cmd.Flags().Int64Var(&cas, "cas", 0, "roll back only if the current version is `M`")
	return cmd
}

// casFlag returns the --cas value to send: nil when the flag was not given.
func casFlag(cmd *cobra.Command, cas int64) (*int64, error) {
	if !cmd.Flags().Changed("cas") {
		return nil, nil
	}
	if cas < 0 {
		return nil, usageErrorf(cmd, "--cas must be the version you expect to be current (0: none yet), got %d", cas)
	}
	return &cas, nil
}

// readValues reads the values of put or patch (see readValues in
// values.go); mistakes in them are usage errors.
func (inv *invocation) readValues(cmd *cobra.Command, args []string) (map[string]string, error) {
	data, err := readValues(args, inv.p.Stdin, inv.p.Stderr)
	var bad *inputError
	if errors.As(err, &bad) {
		return nil, &usageError{command: cmd.CommandPath(), err: err}
	}
	return data, err
}
