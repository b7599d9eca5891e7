package cli

import (
	"context"
	"errors"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// listPageSize is how many entries list asks Nexus for per page (Nexus's
// maximum).
const listPageSize = 1000

// completionTimeout bounds the Nexus call behind a shell completion: a
// person is waiting at the prompt.
const completionTimeout = 5 * time.Second

func (inv *invocation) secretCommand() *cobra.Command {
	return groupCommand("secret", "Store, read, list and delete versioned secrets",
		`  spike secret put apps/demo/db user=admin pass=@./db-password.txt
  spike secret get apps/demo/db
  spike secret get apps/demo/db --field pass
  spike secret list apps/
  spike secret patch apps/demo/db pass=- < ./new-password.txt
  spike secret delete apps/demo/db --versions 1,2
  spike secret metadata get apps/demo/db`,
		inv.putCommand(),
		inv.patchCommand(),
		inv.getCommand(),
		inv.listCommand(),
		inv.deleteCommand(),
		inv.undeleteCommand(),
		inv.destroyCommand(),
		inv.rollbackCommand(),
		inv.metadataCommand(),
		inv.watchCommand(),
	)
}

func (inv *invocation) getCommand() *cobra.Command {
	var (
		version int64
		field   string
	)
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Show a version of a secret (the latest by default)",
		Long: `get shows the key/value pairs of a secret version, with its path, version
and who created it when.

Output:
  table (default)  values with control characters quoted, for reading
  -o json|yaml     the exact values, with path, version and creator
  -o env           KEY='value' lines for the shell, sorted by key; eval them
                   to set shell variables with the exact values (keys must
                   be shell variable names)
  --field KEY      only the value of KEY, exactly, with no newline added

Reading a deleted or destroyed version fails and says so; see
'spike secret metadata get PATH' for the state of every version.`,
		Example: `  spike secret get apps/demo/db
  spike secret get apps/demo/db --version 2
  spike secret get apps/demo/db --field pass
  PGPASSWORD="$(spike secret get apps/demo/db --field pass)" psql -U admin
  spike secret get apps/demo/db --field cert > cert.pem
  eval "$(spike secret get apps/demo/db -o env)"; echo "$user"
  spike secret get apps/demo/db -o json | jq -r .data.pass`,
		Args:              argCount(1, 1, "PATH"),
		ValidArgsFunction: inv.completePath,
		Annotations:       map[string]string{annotationEnv: "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return usageErrorf(cmd, "--version must be a version number (1 or more), or 0 for the latest; got %d", version)
			}
			fieldSet := cmd.Flags().Changed("field")
			switch {
			case fieldSet && field == "":
				return usageErrorf(cmd, "--field needs the name of a key")
			case fieldSet && cmd.Flags().Changed("output"):
				return usageErrorf(cmd, "--field prints one raw value, so it cannot be combined with -o")
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: args[0], Version: version}))
				if err != nil {
					return err
				}
				if fieldSet {
					return writeField(inv.p.Stdout, resp.Msg.GetSecret(), field)
				}
				return writeSecret(inv.p.Stdout, inv.output, resp.Msg.GetSecret())
			})
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "the version `N` to show (default: the latest)")
	cmd.Flags().StringVar(&field, "field", "", "print only the value of `KEY`, exactly, without a newline")
	return cmd
}

func (inv *invocation) listCommand() *cobra.Command {
	var recursive, deleted bool
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List secrets one directory level at a time, or recursively",
		Long: `list shows the live secrets under PREFIX like a directory listing: secrets
directly in PREFIX, and the subdirectories holding more secrets, marked with
a trailing '/'. Entries are printed relative to PREFIX, which is read as a
directory even without a trailing '/' (apps and apps/ are the same). Without
PREFIX, list starts at the top.

With -r, list prints the full path of every secret whose path starts with
PREFIX, at any depth.

With --deleted, list also shows secrets whose every version is deleted
(soft deleted: 'spike secret undelete' brings them back), marked
"(deleted)"; destroyed versions never count.

-o json and -o yaml give the full paths in both modes, as {"paths": [...]},
and with --deleted the deleted ones again in "deleted".`,
		Example: `  spike secret list
  spike secret list apps/
  spike secret list apps/demo
  spike secret list -r apps/
  spike secret list -r --deleted apps/
  spike secret list -r -o json | jq -r '.paths[]'`,
		Args:              argCount(0, 1, "at most one PREFIX"),
		ValidArgsFunction: inv.completePath,
		RunE: func(cmd *cobra.Command, args []string) error {
			var prefix string
			if len(args) == 1 {
				prefix = args[0]
			}
			if !recursive && prefix != "" && !strings.HasSuffix(prefix, "/") {
				prefix += "/"
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				paths, gone, err := listAll(ctx, n, prefix, recursive, deleted)
				if err != nil {
					return err
				}
				shown := paths
				if !recursive {
					shown = relativeTo(prefix, paths)
				}
				return writePaths(inv.p.Stdout, inv.output, paths, shown, gone)
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "list every secret below PREFIX, with full paths")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "also list secrets whose every version is deleted, marked (deleted)")
	return cmd
}

// listAll fetches every page of a listing, and with deleted the entries
// that are deleted secrets.
func listAll(ctx context.Context, n *nexus, prefix string, recursive, deleted bool) ([]string, []string, error) {
	var paths, gone []string
	token := ""
	for {
		resp, err := n.secrets.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{
			Prefix:         prefix,
			Recursive:      recursive,
			PageSize:       listPageSize,
			PageToken:      token,
			IncludeDeleted: deleted,
		}))
		if err != nil {
			return nil, nil, err
		}
		paths = append(paths, resp.Msg.GetPaths()...)
		gone = append(gone, resp.Msg.GetDeleted()...)
		next := resp.Msg.GetNextPageToken()
		if next == "" {
			return paths, gone, nil
		}
		if next == token {
			return nil, nil, errors.New("the listing does not advance: Nexus returned the same page token twice")
		}
		token = next
	}
}

// relativeTo strips the directory prefix from each path; a path outside
// it is kept whole.
func relativeTo(prefix string, paths []string) []string {
	rel := make([]string, len(paths))
	for i, p := range paths {
		if r, ok := strings.CutPrefix(p, prefix); ok && r != "" {
			p = r
		}
		rel[i] = p
	}
	return rel
}

// completePath completes the PATH argument of secret commands with the
// entries of the directory typed so far, asking Nexus. Any failure (no
// SVID, Nexus down) simply offers nothing.
func (inv *invocation) completePath(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	directive := cobra.ShellCompDirectiveNoFileComp
	if len(args) > 0 {
		return nil, directive
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	dir := toComplete[:strings.LastIndexByte(toComplete, '/')+1]
	var matches []cobra.Completion
	_ = inv.withNexus(ctx, func(ctx context.Context, n *nexus) error {
		paths, _, err := listAll(ctx, n, dir, false, false)
		for _, p := range paths {
			if strings.HasPrefix(p, toComplete) {
				matches = append(matches, p)
				if strings.HasSuffix(p, "/") {
					directive |= cobra.ShellCompDirectiveNoSpace
				}
			}
		}
		return err
	})
	return matches, directive
}
