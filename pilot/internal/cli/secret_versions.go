package cli

import (
	"context"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// versionsCommand describes one of delete, undelete and destroy: commands
// that change the state of a list of versions (the latest by default).
type versionsCommand struct {
	name, verb, short, long, example string
	// call sends the request and returns the versions Nexus changed.
	call func(ctx context.Context, n *nexus, path string, versions []int64) ([]int64, error)
}

func (inv *invocation) deleteCommand() *cobra.Command {
	return inv.versionsCommand(versionsCommand{
		name:  "delete",
		verb:  "deleted",
		short: "Delete versions of a secret (the latest by default); undelete restores them",
		long: `delete soft-deletes versions of the secret at PATH: the latest one, or those
given with --versions. Deleted versions cannot be read, but their data is
kept, so 'spike secret undelete' can restore them. To wipe the data for
good, use 'spike secret destroy'; to remove the secret with all its
versions, 'spike secret metadata delete'.`,
		example: `  spike secret delete apps/demo/db
  spike secret delete apps/demo/db --versions 1,2`,
		call: func(ctx context.Context, n *nexus, path string, versions []int64) ([]int64, error) {
			resp, err := n.secrets.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: path, Versions: versions}))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetVersions(), nil
		},
	})
}

func (inv *invocation) undeleteCommand() *cobra.Command {
	return inv.versionsCommand(versionsCommand{
		name:  "undelete",
		verb:  "undeleted",
		short: "Restore deleted versions of a secret (the latest by default)",
		long: `undelete restores soft-deleted versions of the secret at PATH: the latest
one, or those given with --versions, so that they can be read again.
Destroyed versions cannot be restored.`,
		example: `  spike secret undelete apps/demo/db
  spike secret undelete apps/demo/db --versions 3,4`,
		call: func(ctx context.Context, n *nexus, path string, versions []int64) ([]int64, error) {
			resp, err := n.secrets.UndeleteSecret(ctx, connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: path, Versions: versions}))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetVersions(), nil
		},
	})
}

func (inv *invocation) destroyCommand() *cobra.Command {
	return inv.versionsCommand(versionsCommand{
		name:  "destroy",
		verb:  "destroyed",
		short: "Wipe the data of versions of a secret for good (the latest by default)",
		long: `destroy wipes the sealed data of versions of the secret at PATH: the latest
one, or those given with --versions. This cannot be undone: destroyed
versions can never be read or restored. The version numbers and their
metadata remain; see 'spike secret metadata get PATH'.`,
		example: `  spike secret destroy apps/demo/db --versions 1
  spike secret destroy apps/demo/db --versions 1,2,3 -o json`,
		call: func(ctx context.Context, n *nexus, path string, versions []int64) ([]int64, error) {
			resp, err := n.secrets.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: path, Versions: versions}))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetVersions(), nil
		},
	})
}

func (inv *invocation) versionsCommand(c versionsCommand) *cobra.Command {
	var versions versionList
	cmd := &cobra.Command{
		Use:               c.name + " PATH [--versions N,N...]",
		Short:             c.short,
		Long:              c.long,
		Example:           c.example,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				changed, err := c.call(ctx, n, args[0], versions)
				if err != nil {
					return err
				}
				return writeVersions(inv.p.Stdout, inv.output, c.verb, args[0], changed)
			})
		},
	}
	cmd.Flags().Var(&versions, "versions", "comma-separated versions, e.g. 1,2,3 (default: the latest)")
	return cmd
}
