package cli

import (
	"context"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) metadataCommand() *cobra.Command {
	return groupCommand("metadata", "Show and change a secret's settings and custom metadata, or remove it",
		`  spike secret metadata get apps/demo/db
  spike secret metadata put apps/demo/db --max-versions 5 --cas-required
  spike secret metadata put apps/demo/db --custom owner=team-a
  spike secret metadata delete apps/demo/db`,
		inv.metadataGetCommand(),
		inv.metadataPutCommand(),
		inv.metadataDeleteCommand(),
	)
}

func (inv *invocation) metadataGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get PATH",
		Short: "Show a secret's settings, custom metadata and the state of each version",
		Long: `metadata get shows the settings of the secret at PATH (current and oldest
retained version, how many versions are kept, whether writes need --cas),
its custom metadata, and for each retained version whether it is active,
deleted or destroyed, who created it and when. It shows no secret values.`,
		Example: `  spike secret metadata get apps/demo/db
  spike secret metadata get apps/demo/db -o json | jq .current_version
  spike secret metadata get apps/demo/db -o yaml`,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: args[0]}))
				if err != nil {
					return err
				}
				return writeMetadata(inv.p.Stdout, inv.output, resp.Msg.GetMetadata())
			})
		},
	}
}

func (inv *invocation) metadataPutCommand() *cobra.Command {
	var (
		maxVersions int32
		casRequired bool
		custom      []string
		clearCustom bool
	)
	cmd := &cobra.Command{
		Use:   "put PATH [--max-versions N] [--cas-required[=false]] [--custom KEY=VALUE]... [--clear-custom]",
		Short: "Change a secret's settings and custom metadata",
		Long: `metadata put changes the settings of the secret at PATH, creating the secret
(without versions) if it does not exist, and prints the resulting metadata.
Only the settings you give change:

  --max-versions N     keep the newest N versions; older ones are removed
                       from the database. 0 means Nexus's default.
  --cas-required       every put and patch must give --cas;
                       --cas-required=false turns this off again
  --custom KEY=VALUE   custom metadata, repeatable; the given pairs replace
                       all custom metadata (they are not merged)
  --clear-custom       remove all custom metadata

Custom metadata is sealed at rest like secret values, but it is not meant
for secrets: 'metadata get' shows it.`,
		Example: `  spike secret metadata put apps/demo/db --max-versions 20
  spike secret metadata put apps/demo/db --cas-required
  spike secret metadata put apps/demo/db --cas-required=false --max-versions 0
  spike secret metadata put apps/demo/db --custom owner=team-a --custom rotation=90d
  spike secret metadata put apps/demo/db --clear-custom`,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			flags := cmd.Flags()
			req := &nexusv1.UpdateSecretMetadataRequest{Path: args[0]}
			if flags.Changed("max-versions") {
				if maxVersions < 0 {
					return usageErrorf(cmd, "--max-versions must be 0 (Nexus's default) or more, got %d", maxVersions)
				}
				req.MaxVersions = &maxVersions
			}
			if flags.Changed("cas-required") {
				req.CasRequired = &casRequired
			}
			switch {
			case flags.Changed("custom") && clearCustom:
				return usageErrorf(cmd, "--custom replaces all custom metadata and --clear-custom removes it; give only one of them")
			case flags.Changed("custom"):
				entries, err := parseCustom(custom)
				if err != nil {
					return &usageError{command: cmd.CommandPath(), err: err}
				}
				req.CustomMetadata = &nexusv1.CustomMetadata{Entries: entries}
			case clearCustom:
				req.CustomMetadata = &nexusv1.CustomMetadata{}
			}
			if req.MaxVersions == nil && req.CasRequired == nil && req.CustomMetadata == nil {
				return usageErrorf(cmd, "nothing to change: give --max-versions, --cas-required, --custom or --clear-custom")
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.UpdateSecretMetadata(ctx, connect.NewRequest(req))
				if err != nil {
					return err
				}
				return writeMetadata(inv.p.Stdout, inv.output, resp.Msg.GetMetadata())
			})
		},
	}
	flags := cmd.Flags()
	flags.Int32Var(&maxVersions, "max-versions", 0, "keep at most `N` versions (0: Nexus's default)")
	flags.BoolVar(&casRequired, "cas-required", false, "require --cas on every put and patch (--cas-required=false: do not)")
	flags.StringArrayVar(&custom, "custom", nil, "custom metadata `KEY=VALUE`, repeatable; replaces all custom metadata")
	flags.BoolVar(&clearCustom, "clear-custom", false, "remove all custom metadata")
	return cmd
}

func (inv *invocation) metadataDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete PATH",
		Short: "Remove a secret and all its versions for good",
		Long: `metadata delete removes the secret at PATH: all its versions, their data and
its metadata. This cannot be undone. To hide only some versions, use
'spike secret delete'.`,
		Example: `  spike secret metadata delete apps/demo/db
  spike secret metadata delete apps/demo/db -o json`,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				if _, err := n.secrets.DeleteSecretMetadata(ctx, connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: args[0]})); err != nil {
					return err
				}
				return writeMetadataDeleted(inv.p.Stdout, inv.output, args[0])
			})
		},
	}
}
