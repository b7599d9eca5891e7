package cli

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func (inv *invocation) rotateCommand() *cobra.Command {
	var (
		batch   uint32
		keepOld bool
	)
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the root key: a new version, every data key re-wrapped under it, the old ones destroyed",
		Long: `rotate makes a new random root key version, which wraps every data key
made from then on, and has every Keeper take it. It then re-wraps every
stored data key under it, online, in batches (progress on a terminal), and
finally destroys the older root key versions: from then on no copy of the
database, old or new, opens with them. Secrets are not re-encrypted (data
keys are re-wrapped, not replaced), so the work is proportional to the
number of data keys, not of secrets.

Requests keep being served throughout. An interrupted rotate is resumed by
running it again: while a version older than the active one exists, rotate
re-wraps and destroys instead of adding another version. The credentials
(password, shares) do not change and are not asked for; to change them,
use rekey.`,
		Example: `  spike operator rotate
  spike operator rotate --keep-old`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := inv.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			return inv.rotate(cmd.Context(), n, batch, keepOld)
		},
	}
	cmd.Flags().Uint32Var(&batch, "batch", 500, "data keys re-wrapped per request (at most 5000)")
	cmd.Flags().BoolVar(&keepOld, "keep-old", false, "do not destroy the older root key versions (run rotate again to finish)")
	return cmd
}

// rotate runs the three steps of a rotation, each request under its own
// deadline, resuming one that was left unfinished.
func (inv *invocation) rotate(ctx context.Context, n *nexus, batch uint32, keepOld bool) error {
	var active, oldest uint32
	err := inv.call(ctx, n, func(ctx context.Context) error {
		st, err := n.operator.Status(ctx, connect.NewRequest(&nexusv1.StatusRequest{}))
		if err != nil {
			return err
		}
		active, oldest = heldVersions(st.Msg)
		return nil
	})
	if err != nil {
		return err
	}
	if active == 0 {
		return fmt.Errorf("no Keeper holds the root key: unseal first (spike operator status says more)")
	}
	if oldest < active {
		fmt.Fprintf(inv.p.Stderr, "spike: resuming a rotation: version %d is active, version %d not yet destroyed\n", active, oldest)
	} else {
		err = inv.call(ctx, n, func(ctx context.Context) error {
			resp, err := n.operator.RotateRootKey(ctx, connect.NewRequest(&nexusv1.RotateRootKeyRequest{ExpectedActiveVersion: active}))
			if err != nil {
				return err
			}
			active, oldest = resp.Msg.GetActiveKeyVersion(), resp.Msg.GetOldestKeyVersion()
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(inv.p.Stderr, "spike: root key version %d is active; re-wrapping data keys\n", active)
	}
	done, err := inv.rewrapAll(ctx, n, batch)
	if err != nil {
		return err
	}
	if keepOld {
		return writeLine(inv.p.Stdout, "Root key version %d is active; %d data keys re-wrapped under it. Versions %d to %d are kept (--keep-old): run rotate again to destroy them.", active, done, oldest, active-1)
	}
	err = inv.call(ctx, n, func(ctx context.Context) error {
		resp, err := n.operator.DestroyOldRootKeys(ctx, connect.NewRequest(&nexusv1.DestroyOldRootKeysRequest{ExpectedActiveVersion: active}))
		if err != nil {
			return err
		}
		oldest = resp.Msg.GetOldestKeyVersion()
		return nil
	})
	if err != nil {
		return err
	}
	return writeLine(inv.p.Stdout, "Root key rotated: version %d is the only one left; %d data keys re-wrapped under it.", active, done)
}

// rewrapAll calls RewrapDataKeys until no data key is left under an older
// version, showing progress on a terminal, and returns how many it
// re-wrapped.
func (inv *invocation) rewrapAll(ctx context.Context, n *nexus, batch uint32) (int64, error) {
	tty := inv.stderrIsTerminal()
	start := time.Now()
	var done, total int64
	for {
		var resp *nexusv1.RewrapDataKeysResponse
		err := inv.call(ctx, n, func(ctx context.Context) error {
			r, err := n.operator.RewrapDataKeys(ctx, connect.NewRequest(&nexusv1.RewrapDataKeysRequest{Limit: batch}))
			if err == nil {
				resp = r.Msg
			}
			return err
		})
		if err != nil {
			if tty {
				fmt.Fprintln(inv.p.Stderr)
			}
			return done, err
		}
		done += resp.GetRewrapped()
		total = max(total, done+resp.GetRemaining())
		if tty {
			rate := float64(done) / max(time.Since(start).Seconds(), 0.001)
			fmt.Fprintf(inv.p.Stderr, "\rre-wrapped %d of %d data keys (%.0f/s)   ", done, total, rate)
		}
		if resp.GetRemaining() == 0 {
			break
		}
		if resp.GetRewrapped() == 0 {
			// Rows changed under us (another rewrap ran): look again.
			time.Sleep(100 * time.Millisecond)
		}
	}
	if tty {
		fmt.Fprintln(inv.p.Stderr)
	}
	return done, nil
}

// heldVersions returns the root key versions of the newest keyring epoch
// a Keeper holds; 0, 0 when none holds the keyring.
func heldVersions(st *nexusv1.StatusResponse) (active, oldest uint32) {
	var epoch uint64
	for _, k := range st.GetKeepers() {
		if k.GetHoldsKeyring() && (active == 0 || k.GetEpoch() > epoch) {
			epoch, active, oldest = k.GetEpoch(), k.GetActiveKeyVersion(), k.GetOldestKeyVersion()
		}
	}
	return active, oldest
}

// stderrIsTerminal reports whether Pilot's standard error is a terminal,
// where progress is shown.
func (inv *invocation) stderrIsTerminal() bool {
	f, ok := inv.p.Stderr.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
