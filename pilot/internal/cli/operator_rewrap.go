package cli

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) rewrapCommand() *cobra.Command {
	var (
		batch uint32
		rate  float64
	)
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Seal every secret again under the data key in use, then retire the data keys nothing uses",
		Long: `rewrap seals every secret's head, and every version that names an older
data key, again under the data key Nexus seals with now, online, in
batches (progress on a terminal). Values, versions and metadata do not
change; each version keeps its own key, which the head carries. Then it
seals the admin tokens again the same way, and deletes the data keys that nothing stored refers to any more and that are
old enough that no Nexus can still be sealing with them (more than an hour
and ten minutes).

After a data key may have leaked (a memory dump of Nexus), rewrap so that
what it sealed is sealed under another key: a copy of the database taken
afterwards no longer opens with it. Run it again to resume; --rate bounds
the load it adds.`,
		Example: `  spike operator rewrap
  spike operator rewrap --rate 200 --batch 50`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rate < 0 {
				return usageErrorf(cmd, "--rate must not be negative")
			}
			n, err := inv.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			return inv.rewrap(cmd.Context(), n, batch, rate)
		},
	}
	cmd.Flags().Uint32Var(&batch, "batch", 100, "secrets sealed again per request (at most 1000)")
	cmd.Flags().Float64Var(&rate, "rate", 0, "at most this many secrets a second (0: no limit)")
	return cmd
}

// rewrap walks every secret in path order, a batch per request, at most
// rate secrets a second, then retires the data keys left unused.
func (inv *invocation) rewrap(ctx context.Context, n *nexus, batch uint32, rate float64) error {
	tty := inv.stderrIsTerminal()
	start := time.Now()
	var (
		after                   string
		looked, resealed, total int64
	)
	for {
		var resp *nexusv1.RewrapSecretsResponse
		err := inv.call(ctx, n, func(ctx context.Context) error {
			r, err := n.operator.RewrapSecrets(ctx, connect.NewRequest(&nexusv1.RewrapSecretsRequest{Limit: batch, After: after}))
			if err == nil {
				resp = r.Msg
			}
			return err
		})
		if err != nil {
			if tty {
				fmt.Fprintln(inv.p.Stderr)
			}
			return err
		}
		resealed += resp.GetResealed()
		looked += int64(batch)
		if after == "" {
			total = resp.GetRemaining() + resp.GetResealed()
		}
		if tty {
			fmt.Fprintf(inv.p.Stderr, "\rsealed %d of %d secrets again   ", resealed, total)
		}
		if resp.GetNext() == "" {
			break
		}
		after = resp.GetNext()
		if rate > 0 {
			// Wait until the secrets looked at so far fit the rate.
			due := start.Add(time.Duration(float64(looked) / rate * float64(time.Second)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(due)):
			}
		}
	}
	if tty {
		fmt.Fprintln(inv.p.Stderr)
	}
	var retired *nexusv1.RetireDataKeysResponse
	err := inv.call(ctx, n, func(ctx context.Context) error {
		r, err := n.operator.RetireDataKeys(ctx, connect.NewRequest(&nexusv1.RetireDataKeysRequest{}))
		if err == nil {
			retired = r.Msg
		}
		return err
	})
	if err != nil {
		return err
	}
	return writeLine(inv.p.Stdout, "Sealed %d secrets again under the data key in use. Retired %d data keys; %d kept (in use, still referred to, or younger than an hour and ten minutes: run rewrap again later to retire those).",
		resealed, retired.GetRetired(), retired.GetKept())
}
