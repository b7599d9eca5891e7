package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// watchCommand is `spike secret watch`: the changes under a prefix as they
// commit, until interrupted.
func (inv *invocation) watchCommand() *cobra.Command {
	var (
		cursor string
		data   bool
	)
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print the changes to secrets under a prefix as they happen",
		Long: `watch prints each change to the secrets under PREFIX (every secret you may
read when empty) as it commits, through any Nexus replica, until interrupted.
Each change is checked by Nexus against the secret's sealed state and sent
only if you may read its path at that moment.

When the stream ends (interrupted, or a failure), the last cursor is printed
on stderr: pass it as --cursor to resume without missing or repeating a
change (within the retention of the change log, 24 hours by default).

Output:
  table (default)  one line per change: time, kind, path, versions
  -o json          one JSON object per line, with the cursor after it
  --data           with each new version, its data (-o json only)`,
		Example: `  spike secret watch apps/
  spike secret watch apps/demo/ -o json --data
  spike secret watch apps/ --cursor AQ...`,
		Args: argCount(0, 1, "PREFIX"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case inv.output == formatYAML:
				return usageErrorf(cmd, "-o yaml is not a stream format: use table or json")
			case data && inv.output != formatJSON:
				return usageErrorf(cmd, "--data prints values exactly, so it needs -o json")
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return inv.watch(cmd.Context(), prefix, cursor, data)
		},
	}
	cmd.Flags().StringVar(&cursor, "cursor", "", "resume after this `CURSOR` (from an earlier watch)")
	cmd.Flags().BoolVar(&data, "data", false, "include the data of each new version (-o json)")
	return cmd
}

// watch streams until ctx ends or the stream fails; a stream that Nexus
// ends cleanly (idle or lifetime bound) is opened again from its cursor.
func (inv *invocation) watch(ctx context.Context, prefix, cursor string, data bool) error {
	n, err := inv.connect(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	defer func() {
		if cursor != "" {
			fmt.Fprintf(inv.p.Stderr, "cursor: %s\n", cursor)
		}
	}()
	for {
		stream, err := n.secrets.WatchSecrets(ctx, connect.NewRequest(&nexusv1.WatchSecretsRequest{
			Prefix: prefix, Cursor: cursor, IncludeData: data,
		}))
		if err != nil {
			return transportError(err, n.url, inv.timeout)
		}
		for stream.Receive() {
			r := stream.Msg()
			for _, e := range r.GetEvents() {
				if err := writeEvent(inv.p.Stdout, inv.output, e, r.GetCursor()); err != nil {
					_ = stream.Close()
					return err
				}
			}
			cursor = r.GetCursor()
		}
		err = stream.Err()
		_ = stream.Close()
		switch {
		case ctx.Err() != nil:
			return nil // interrupted
		case err != nil:
			return transportError(err, n.url, inv.timeout)
		}
	}
}

// eventDoc is an event as -o json prints it.
type eventDoc struct {
	Path        string            `json:"path"`
	Kind        string            `json:"kind"`
	Version     int64             `json:"version"`
	Versions    []int64           `json:"versions"`
	CommittedAt time.Time         `json:"committed_at"`
	Data        map[string]string `json:"data,omitempty"`
	Cursor      string            `json:"cursor"`
}

func writeEvent(w io.Writer, format string, e *nexusv1.SecretEvent, cursor string) error {
	kind := strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "CHANGE_KIND_"))
	versions := slices.Clone(e.GetVersions())
	if versions == nil {
		versions = []int64{}
	}
	var err error
	if format == formatJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		err = enc.Encode(eventDoc{Path: e.GetPath(), Kind: kind, Version: e.GetVersion(), Versions: versions,
			CommittedAt: e.GetCommittedAt().AsTime().UTC(), Data: e.GetData(), Cursor: cursor})
	} else {
		vs := make([]string, len(versions))
		for i, v := range versions {
			vs[i] = fmt.Sprint(v)
		}
		_, err = fmt.Fprintf(w, "%s  %-16s %s  versions [%s]  current %d\n",
			e.GetCommittedAt().AsTime().UTC().Format(time.RFC3339), kind, e.GetPath(), strings.Join(vs, ","), e.GetVersion())
	}
	if err != nil {
		return errors.Join(errors.New("write output"), err)
	}
	return nil
}
