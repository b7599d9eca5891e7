package cli

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

const patternHelp = `Patterns are anchored: they match the whole SPIFFE ID or path, never a part
of it. In a pattern '*' matches within one segment (between '/') and '**'
matches any number of segments; e.g. spiffe://spike.local/app/* and
apps/web/**. Nexus refuses an invalid pattern and says why.

Permissions: read, list, write, delete, destroy and meta. A workload may
do only what some policy grants it, and the permissions of all policies
that match it add up.`

func (inv *invocation) policyCommand() *cobra.Command {
	return groupCommand("policy", "Grant workloads access to secrets by SPIFFE ID and path",
		`  spike policy put web-read --spiffe-id 'spiffe://spike.local/app/web' --path 'apps/web/**' --perm read,list
  spike policy put -f policy.yaml
  spike policy list
  spike policy get web-read -o yaml
  spike policy check spiffe://spike.local/app/web apps/web/db
  spike policy delete web-read`,
		inv.policyPutCommand(),
		inv.policyGetCommand(),
		inv.policyListCommand(),
		inv.policyDeleteCommand(),
		inv.policyCheckCommand(),
	)
}

func (inv *invocation) policyPutCommand() *cobra.Command {
	var (
		file     string
		spiffeID string
		path     string
		perms    permList
	)
	cmd := &cobra.Command{
		Use:   "put NAME --spiffe-id PATTERN --path PATTERN --perm PERMISSIONS | put [NAME] -f FILE",
		Short: "Create or replace a policy",
		Long: `put creates the policy NAME, or replaces it: callers whose SPIFFE ID matches
--spiffe-id get the permissions --perm on the secrets whose path matches
--path. --perm takes a comma-separated list and may be repeated.

With -f the whole policy comes from FILE (- for stdin), written as YAML or
JSON with the keys name, spiffe_id_pattern (or spiffe_id), path_pattern (or
path) and permissions (a list). NAME may then be left out; if given, it
must be the name in the file. The output of 'spike policy get -o yaml' is
such a file.

` + patternHelp,
		Example: `  spike policy put web-read --spiffe-id 'spiffe://spike.local/app/web' --path 'apps/web/**' --perm read,list
  spike policy put ci --spiffe-id 'spiffe://spike.local/ci/*' --path 'apps/*/deploy' --perm read --perm list
  spike policy put -f policy.yaml
  spike policy put web-read -f web-read.json -o json
  spike policy put -f - < web-read.yaml`,
		Args:              argCount(0, 1, "NAME (or -f FILE)"),
		ValidArgsFunction: inv.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			var name string
			if len(args) == 1 {
				name = args[0]
			}
			flags := cmd.Flags()
			var p *nexusv1.Policy
			if flags.Changed("file") {
				if flags.Changed("spiffe-id") || flags.Changed("path") || flags.Changed("perm") {
					return usageErrorf(cmd, "-f takes the whole policy from the file; do not combine it with --spiffe-id, --path or --perm")
				}
				var err error
				if p, err = inv.policyFromFile(cmd, file, name); err != nil {
					return err
				}
			} else {
				if name == "" {
					return usageErrorf(cmd, "missing NAME: give the policy's name, or the whole policy with -f FILE")
				}
				present := map[string]bool{fieldSPIFFEID: flags.Changed("spiffe-id"), fieldPath: flags.Changed("path"), fieldPermissions: flags.Changed("perm")}
				if missing := missingFields(present, flagNames); len(missing) > 0 {
					return usageErrorf(cmd, "missing %s: a policy needs --spiffe-id, --path and --perm (or -f FILE)", strings.Join(missing, ", "))
				}
				p = &nexusv1.Policy{Name: name, SpiffeIdPattern: spiffeID, PathPattern: path, Permissions: perms}
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.policies.PutPolicy(ctx, connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: p}))
				if err != nil {
					return err
				}
				stored := resp.Msg.GetPolicy()
				if stored == nil {
					stored = p
				}
				return writePolicyPut(inv.p.Stdout, inv.output, stored)
			})
		},
	}
	flags := cmd.Flags()
	flags.StringVarP(&file, "file", "f", "", "read the whole policy from `FILE` (YAML or JSON; - for stdin)")
	flags.StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID `PATTERN` of the callers the policy applies to")
	flags.StringVar(&path, "path", "", "secret path `PATTERN` the policy applies to")
	flags.Var(&perms, "perm", "`PERMISSIONS` to grant, comma-separated, repeatable: read, list, write, delete, destroy, meta")
	return cmd
}

// flagNames names the policy fields as put's flags.
var flagNames = map[string]string{fieldSPIFFEID: "--spiffe-id", fieldPath: "--path", fieldPermissions: "--perm"}

// policyFromFile reads the policy of put -f and reconciles its name with
// the NAME argument (empty when not given).
func (inv *invocation) policyFromFile(cmd *cobra.Command, file, name string) (*nexusv1.Policy, error) {
	p, present, err := readPolicyFile(file, inv.p.Stdin)
	var bad *inputError
	if errors.As(err, &bad) {
		return nil, &usageError{command: cmd.CommandPath(), err: err}
	}
	if err != nil {
		return nil, err
	}
	source := file
	if file == stdinArg {
		source = "stdin"
	}
	switch {
	case name != "" && present[fieldName] && p.GetName() != name:
		return nil, usageErrorf(cmd, "NAME %q differs from the name %q in %s; leave NAME out or make them match", name, p.GetName(), source)
	case name != "":
		p.Name = name
	case !present[fieldName]:
		return nil, usageErrorf(cmd, "the policy in %s has no name: add name: to it, or give NAME", source)
	}
	if missing := missingFields(present, fileKeyNames); len(missing) > 0 {
		return nil, usageErrorf(cmd, "the policy in %s has no %s; a policy has %s", source, strings.Join(missing, ", "), policyFileKeys)
	}
	return p, nil
}

// fileKeyNames names the policy fields as a policy file's keys.
var fileKeyNames = map[string]string{fieldSPIFFEID: fieldSPIFFEID, fieldPath: fieldPath, fieldPermissions: fieldPermissions}

func (inv *invocation) policyGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a policy",
		Long: `get shows the policy NAME: its SPIFFE ID and path patterns, its permissions
and who changed it last, when. -o yaml prints it in the form that
'spike policy put -f' reads.`,
		Example: `  spike policy get web-read
  spike policy get web-read -o yaml > web-read.yaml
  spike policy get web-read -o json | jq -r '.permissions[]'`,
		Args:              argCount(1, 1, "NAME"),
		ValidArgsFunction: inv.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.policies.GetPolicy(ctx, connect.NewRequest(&nexusv1.GetPolicyRequest{Name: args[0]}))
				if err != nil {
					return err
				}
				return writePolicy(inv.p.Stdout, inv.output, resp.Msg.GetPolicy())
			})
		},
	}
}

func (inv *invocation) policyListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List all policies",
		Long: `list shows every policy: name, SPIFFE ID pattern, path pattern and
permissions.

Policies are sealed at rest and bound to their name. If a stored policy
fails that check (someone edited or inserted it in the database, outside
SPIKE), it grants nothing, and list names it in a warning on stderr (and
under invalid_policies with -o json|yaml).`,
		Example: `  spike policy list
  spike policy list -o json | jq -r '.policies[].name'
  spike policy list -o yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.policies.ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
				if err != nil {
					return err
				}
				writeInvalidPolicies(inv.p.Stderr, resp.Msg.GetInvalidPolicies())
				return writePolicies(inv.p.Stdout, inv.output, resp.Msg)
			})
		},
	}
}

func (inv *invocation) policyDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy",
		Long: `delete removes the policy NAME. The workloads it matched lose what it
granted them at once, on every Nexus, unless other policies grant it too.`,
		Example: `  spike policy delete web-read
  spike policy delete web-read -o json`,
		Args:              argCount(1, 1, "NAME"),
		ValidArgsFunction: inv.completePolicy,
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				if _, err := n.policies.DeletePolicy(ctx, connect.NewRequest(&nexusv1.DeletePolicyRequest{Name: args[0]})); err != nil {
					return err
				}
				return writePolicyDeleted(inv.p.Stdout, inv.output, args[0])
			})
		},
	}
}

func (inv *invocation) policyCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check SPIFFE_ID PATH",
		Short: "Show which permissions a caller has on a path, and which policies grant them",
		Long: `check asks Nexus what the caller SPIFFE_ID may do with the secret at PATH,
under the current policies: the permissions, then each policy that grants
some of them. An admin SPIFFE ID may do everything with a valid admin
token, whatever the policies say.`,
		Example: `  spike policy check spiffe://spike.local/app/web apps/web/db
  spike policy check spiffe://spike.local/ci/build apps/web/deploy -o json`,
		Args: argCount(2, 2, "SPIFFE_ID and PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.policies.CheckAccess(ctx, connect.NewRequest(&nexusv1.CheckAccessRequest{SpiffeId: args[0], Path: args[1]}))
				if err != nil {
					return err
				}
				return writeAccess(inv.p.Stdout, inv.output, args[0], args[1], resp.Msg)
			})
		},
	}
}

// completePolicy completes a policy NAME argument from Nexus's list. Any
// failure simply offers nothing.
func (inv *invocation) completePolicy(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
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
	var matches []cobra.Completion
	_ = inv.withNexus(ctx, func(ctx context.Context, n *nexus) error {
		resp, err := n.policies.ListPolicies(ctx, connect.NewRequest(&nexusv1.ListPoliciesRequest{}))
		if err != nil {
			return err
		}
		for _, p := range resp.Msg.GetPolicies() {
			if strings.HasPrefix(p.GetName(), toComplete) {
				matches = append(matches, p.GetName())
			}
		}
		return nil
	})
	return matches, directive
}
