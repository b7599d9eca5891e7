package cli

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) secretCommand() *cobra.Command {
	return groupCommand("secret", "Store, read, list and delete secrets",
		`  spike secret put apps/demo/db user=admin pass=s3cr3t
  spike secret get apps/demo/db
  spike secret list apps/
  spike secret delete apps/demo/db`,
		inv.putCommand(),
		inv.getCommand(),
		inv.listCommand(),
		inv.deleteCommand(),
	)
}

func (inv *invocation) putCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "put PATH KEY=VALUE [KEY=VALUE...]",
		Short: "Store key/value pairs as a new version of a secret",
		Long: `put stores the given key/value pairs as a new version of the secret at PATH
and prints the version number. Each pair is split at its first '=', so the
value may itself contain '='; keys must not be empty. The new version holds
exactly the given pairs.

Values given on the command line end up in shell history; prefer reading
them from a variable, e.g. pass="$DB_PASS".`,
		Example: `  spike secret put apps/demo/db user=admin pass=s3cr3t
  spike secret put apps/demo/api token="$API_TOKEN"
  spike secret put apps/demo/db dsn='postgres://db?sslmode=verify-full' -o json`,
		Args: argCount(2, -1, "PATH and at least one KEY=VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parsePairs(args[1:])
			if err != nil {
				return &usageError{command: cmd.CommandPath(), err: err}
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: args[0], Data: data}))
				if err != nil {
					return err
				}
				return writePut(inv.p.Stdout, inv.output, resp.Msg)
			})
		},
	}
}

// parsePairs turns KEY=VALUE arguments into a map. The split is at the first
// '='. Errors name the argument's position and the key, never the value,
// because the value is a secret.
func parsePairs(args []string) (map[string]string, error) {
	data := make(map[string]string, len(args))
	for i, arg := range args {
		key, value, ok := strings.Cut(arg, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("pair %d is not KEY=VALUE", i+1)
		case key == "":
			return nil, fmt.Errorf("pair %d has an empty key", i+1)
		}
		if _, dup := data[key]; dup {
			return nil, fmt.Errorf("key %q is given twice", key)
		}
		data[key] = value
	}
	return data, nil
}

func (inv *invocation) getCommand() *cobra.Command {
	var version int64
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Show a version of a secret (the latest by default)",
		Long: `get shows the key/value pairs of a secret version, with its path, version
and who created it when. The table shows values with control characters
quoted; -o json gives them exactly.`,
		Example: `  spike secret get apps/demo/db
  spike secret get apps/demo/db --version 2
  spike secret get apps/demo/db -o json | jq -r .data.pass`,
		Args: argCount(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return usageErrorf(cmd, "--version must be positive, got %d", version)
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: args[0], Version: version}))
				if err != nil {
					return err
				}
				return writeSecret(inv.p.Stdout, inv.output, resp.Msg.GetSecret())
			})
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "version to show (0: the latest)")
	return cmd
}

func (inv *invocation) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List the paths of secrets, optionally only those under a prefix",
		Long: `list prints the paths of live secrets that start with PREFIX (all secrets
without one), one per line.`,
		Example: `  spike secret list
  spike secret list apps/demo/
  spike secret list -o json`,
		Args: argCount(0, 1, "at most one PREFIX"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var prefix string
			if len(args) == 1 {
				prefix = args[0]
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: prefix}))
				if err != nil {
					return err
				}
				return writePaths(inv.p.Stdout, inv.output, resp.Msg.GetPaths())
			})
		},
	}
}

func (inv *invocation) deleteCommand() *cobra.Command {
	var versions []int64
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete versions of a secret (the latest by default)",
		Long: `delete soft-deletes versions of the secret at PATH: the latest one, or those
given with --versions. It prints the versions that are now deleted.`,
		Example: `  spike secret delete apps/demo/db
  spike secret delete apps/demo/db --versions 1,2`,
		Args: argCount(1, 1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, v := range versions {
				if v <= 0 {
					return usageErrorf(cmd, "--versions must be positive numbers, got %d", v)
				}
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: args[0], Versions: versions}))
				if err != nil {
					return err
				}
				return writeDeleted(inv.p.Stdout, inv.output, args[0], resp.Msg.GetVersions())
			})
		},
	}
	cmd.Flags().Int64SliceVar(&versions, "versions", nil, "comma-separated versions to delete (default: the latest)")
	return cmd
}
