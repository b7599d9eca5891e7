package cli

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Pilot version and the version of Nexus",
		Long: `version prints the version of this spike binary (Pilot) and asks Nexus for
its version. When Nexus cannot be asked (no SVID, not running, refusing),
version still prints the Pilot version, says why the Nexus version is
unknown and succeeds. 'spike --version' prints only the Pilot version and
never contacts Nexus.`,
		Example: `  spike version
  spike version -o json
  spike --version`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc := versionDoc{Pilot: inv.p.Version}
			err := inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.operator.Status(ctx, connect.NewRequest(&nexusv1.StatusRequest{}))
				if err != nil {
					return err
				}
				doc.Nexus = resp.Msg.GetNexusVersion()
				return nil
			})
			switch {
			case err != nil:
				doc.NexusError = firstLine(errorMessage(err))
			case doc.Nexus == "":
				doc.NexusError = "Nexus did not report its version"
			}
			return writeVersion(inv.p.Stdout, inv.output, doc)
		},
	}
}

// firstLine returns s up to its first line break: the error itself,
// without the hints that follow it.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
