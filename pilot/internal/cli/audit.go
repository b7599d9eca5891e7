package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// Limits of audit list.
const (
	defaultAuditLimit = 100
	// maxAuditPageSize is the largest page Nexus hands out.
	maxAuditPageSize = 1000
)

func (inv *invocation) auditCommand() *cobra.Command {
	cmd := groupCommand("audit", "Read, verify and prune the audit trail of every request",
		`  spike audit list --since 1h
  spike audit list --decision deny --since 7d
  spike audit verify
  spike audit prune --before 90d`,
		inv.auditListCommand(),
		inv.auditVerifyCommand(),
		inv.auditPruneCommand(),
	)
	cmd.Long = `audit reads the audit trail that Nexus keeps: one record per request, allowed
or denied, from workloads and admins alike. A record says when, who (the
caller's SPIFFE ID), which RPC, on what (a secret path, a policy name or a
token id), the decision and why, the result and how long it took. It never
holds a secret value, a password or a token.

Records are chained with MACs under a key that only SPIKE can use, so
'spike audit verify' detects records edited, deleted, inserted or
reordered in the database. 'spike audit prune' deletes old records and
leaves a checkpoint so that what remains still verifies.`
	return cmd
}

// auditFilters holds the flags of audit list.
type auditFilters struct {
	since, until string
	caller       string
	path         string
	rpc          string
	decision     string
	limit        int
}

// request checks the filters and turns them into the first page's
// request; durations count back from now.
func (f *auditFilters) request(cmd *cobra.Command, now time.Time) (*nexusv1.ListAuditRecordsRequest, error) {
	req := &nexusv1.ListAuditRecordsRequest{
		Caller:       f.caller,
		TargetPrefix: f.path,
		Rpc:          f.rpc,
		PageSize:     auditPageSize(f.limit),
	}
	flags := cmd.Flags()
	var since, until time.Time
	if flags.Changed("since") {
		t, err := parseWhen(f.since, now)
		if err != nil {
			return nil, usageErrorf(cmd, "--since: %v", err)
		}
		since, req.Since = t, timestamppb.New(t)
	}
	if flags.Changed("until") {
		t, err := parseWhen(f.until, now)
		if err != nil {
			return nil, usageErrorf(cmd, "--until: %v", err)
		}
		until, req.Until = t, timestamppb.New(t)
	}
	if req.Since != nil && req.Until != nil && since.After(until) {
		return nil, usageErrorf(cmd, "--since %s is after --until %s; nothing can match", formatWhen(since), formatWhen(until))
	}
	if flags.Changed("decision") {
		switch d := strings.ToLower(f.decision); d {
		case "allow", "deny":
			req.Decision = d
		default:
			return nil, usageErrorf(cmd, "--decision must be allow or deny, got %q", f.decision)
		}
	}
	if f.limit < 0 {
		return nil, usageErrorf(cmd, "--limit must be 0 (all records) or more, got %d", f.limit)
	}
	return req, nil
}

// auditPageSize is the page size for printing limit records (0: all).
func auditPageSize(limit int) int32 {
	if limit <= 0 || limit > maxAuditPageSize {
		return maxAuditPageSize
	}
	return int32(limit)
}

func (inv *invocation) auditListCommand() *cobra.Command {
	f := auditFilters{limit: defaultAuditLimit}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show audit records, newest first, with filters",
		Long: `list prints audit records, newest first: TIME (UTC, to the second), the
DECISION (allow or deny), the result CODE (ok or why the request failed),
the CALLER's SPIFFE ID, the RPC's method name, the TARGET (a secret path,
a policy name or token:<id>), the REASON (the policies that granted
access, admin, or why it was denied) and the DURATION of the request.

The filters combine; a record must match all of them:
  --since, --until  a time range, inclusive. Each is an RFC 3339 time
                    (2025-03-01T00:00:00Z), a date (2025-03-01, midnight
                    UTC) or a duration ago (30m, 1h, 7d, 1d12h; d is 24h)
  --caller          the caller's exact SPIFFE ID
  --path            a prefix of the target, e.g. apps/web/
  --rpc             the RPC, by method name (GetSecret) or full procedure
                    (/spike.nexus.v1.SecretService/GetSecret)
  --decision        allow or deny

list prints at most --limit records (default 100; 0 for all), fetching them
from Nexus a page at a time, and says on stderr when more match.

-o json and -o yaml print every field of each record as {"records": [...]},
times in UTC to the nanosecond: also the request id, the caller's address,
the chain and sequence number, and whether the record carries a MAC.`,
		Example: `  spike audit list
  spike audit list --since 1h --decision deny
  spike audit list --caller spiffe://spike.local/app/web --path apps/web/ --since 7d
  spike audit list --rpc GetSecret --since 2025-03-01T00:00:00Z --until 2025-03-02T00:00:00Z
  spike audit list --since 1d --limit 0 -o json | jq -r '.records[] | select(.decision == "deny") | .caller'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(cmd, inv.p.clock())
			if err != nil {
				return err
			}
			n, err := inv.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			records, more, err := inv.listAudit(cmd.Context(), n, req, f.limit)
			if err != nil {
				return err
			}
			if err := writeAuditRecords(inv.p.Stdout, inv.output, records); err != nil {
				return err
			}
			if more {
				writeAuditMore(inv.p.Stderr, f.limit)
			}
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.since, "since", "", "only records at or after `TIME` (RFC 3339, a date, or a duration ago: 1h, 7d)")
	flags.StringVar(&f.until, "until", "", "only records at or before `TIME` (RFC 3339, a date, or a duration ago: 1h, 7d)")
	flags.StringVar(&f.caller, "caller", "", "only requests from this `SPIFFE_ID`")
	flags.StringVar(&f.path, "path", "", "only requests whose target starts with `PREFIX`")
	flags.StringVar(&f.rpc, "rpc", "", "only calls of the RPC `NAME`: a method (GetSecret) or a full procedure")
	flags.StringVar(&f.decision, "decision", "", "only requests with this `DECISION`: allow or deny")
	flags.IntVar(&f.limit, "limit", defaultAuditLimit, "print at most `N` records; 0 for all")
	return cmd
}

// listAudit fetches pages of records matching req until it has limit of
// them (0: all) or Nexus has no more; each page gets its own --timeout.
// more reports that records beyond the limit match.
func (inv *invocation) listAudit(ctx context.Context, n *nexus, req *nexusv1.ListAuditRecordsRequest, limit int) (records []*nexusv1.AuditRecord, more bool, err error) {
	for {
		var resp *connect.Response[nexusv1.ListAuditRecordsResponse]
		err := inv.call(ctx, n, func(ctx context.Context) error {
			var err error
			resp, err = n.audit.ListAuditRecords(ctx, connect.NewRequest(req))
			return err
		})
		if err != nil {
			return nil, false, err
		}
		records = append(records, resp.Msg.GetRecords()...)
		next := resp.Msg.GetNextPageToken()
		if limit > 0 && len(records) >= limit {
			return records[:limit], len(records) > limit || next != "", nil
		}
		if next == "" {
			return records, false, nil
		}
		if next == req.GetPageToken() {
			return nil, false, errors.New("the listing does not advance: Nexus returned the same page token twice")
		}
		req.PageToken = next
	}
}

func (inv *invocation) auditVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit record was edited, deleted, inserted or reordered",
		Long: `verify asks Nexus to check the whole audit trail. Records are chained with
MACs under a key that only SPIKE can use, one chain per Nexus replica, so a
record edited, deleted, inserted or reordered in the database breaks its
chain. verify prints a line per chain, "ok" with its number of records or
FAILED with the first bad record, its sequence number and what is wrong,
then a summary.

Records written while SPIKE was sealed cannot carry a MAC (the key needs
the root key); verify counts them in a note.

-o json and -o yaml print Nexus's whole answer.

Exit codes: 0 when every chain verifies; 2 when any chain failed, with
"spike: audit trail failed verification" on stderr; 1 when the check could
not run.`,
		Example: `  spike audit verify
  spike audit verify -o json
  spike audit verify || echo 'the audit trail was tampered with' >&2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.audit.VerifyAuditTrail(ctx, connect.NewRequest(&nexusv1.VerifyAuditTrailRequest{}))
				if err != nil {
					return err
				}
				if err := writeVerify(inv.p.Stdout, inv.output, resp.Msg); err != nil {
					return err
				}
				if !trailOK(resp.Msg) {
					return errTrailFailed
				}
				return nil
			})
		},
	}
}

func (inv *invocation) auditPruneCommand() *cobra.Command {
	var (
		before string
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "prune --before TIME [--yes]",
		Short: "Delete audit records older than a time, keeping the trail verifiable",
		Long: `prune deletes the audit records older than --before: an RFC 3339 time
(2025-01-01T00:00:00Z), a date (2025-01-01, midnight UTC) or a duration ago
(2160h or 90d: older than 90 days; d is 24h). In place of what it
deletes, each chain gets a checkpoint with a MAC, so that 'spike audit
verify' still checks the records that remain.

Deleted records are gone for good: archive them first. Use the same
absolute time in both commands (a duration like 90d counts back from the
moment each command runs), and --limit 0 so that list prints them all:
  spike audit list --until 2025-01-01T00:00:00Z --limit 0 -o json > archive.json
  spike audit prune --before 2025-01-01T00:00:00Z

On a terminal prune asks before deleting ("delete audit records older
than <time>? [y/N]"); --yes skips the question. When stdin is not a
terminal (a script, cron) --yes is required.`,
		Example: `  spike audit list --until 2025-01-01T00:00:00Z --limit 0 -o json > archive-2024.json
  spike audit prune --before 2025-01-01T00:00:00Z
  spike audit prune --before 90d --yes
  spike audit prune --before 2160h --yes -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("before") {
				return usageErrorf(cmd, "--before is required: records older than this time are deleted, e.g. --before 90d")
			}
			t, err := parseWhen(before, inv.p.clock())
			if err != nil {
				return usageErrorf(cmd, "--before: %v", err)
			}
			question := fmt.Sprintf("delete audit records older than %s?", formatWhen(t))
			if !yes {
				if _, ok := terminalFD(inv.p.Stdin); !ok {
					return usageErrorf(cmd, "stdin is not a terminal, so spike cannot ask for confirmation; add --yes to delete audit records older than %s", formatWhen(t))
				}
				ok, err := confirm(cmd.Context(), inv.p.Stdin, inv.p.Stderr, question)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%w: no audit records were deleted", errDeclined)
				}
			}
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.audit.PruneAuditTrail(ctx, connect.NewRequest(&nexusv1.PruneAuditTrailRequest{Before: timestamppb.New(t)}))
				if err != nil {
					return err
				}
				return writePrune(inv.p.Stdout, inv.output, pruneDoc{
					Before:      formatWhen(t),
					Deleted:     resp.Msg.GetDeleted(),
					Checkpoints: resp.Msg.GetCheckpoints(),
				})
			})
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&before, "before", "", "delete records older than `TIME` (RFC 3339, a date, or a duration ago: 2160h, 90d)")
	flags.BoolVarP(&yes, "yes", "y", false, "delete without asking")
	return cmd
}
