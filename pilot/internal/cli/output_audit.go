package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// auditRecordDoc is the -o json|yaml form of one audit record: every
// field, the time to the nanosecond.
type auditRecordDoc struct {
	ID            int64  `json:"id" yaml:"id"`
	Time          string `json:"time" yaml:"time"`
	RequestID     string `json:"request_id" yaml:"request_id"`
	Caller        string `json:"caller" yaml:"caller"`
	Peer          string `json:"peer" yaml:"peer"`
	RPC           string `json:"rpc" yaml:"rpc"`
	Target        string `json:"target" yaml:"target"`
	Decision      string `json:"decision" yaml:"decision"`
	Reason        string `json:"reason" yaml:"reason"`
	Code          string `json:"code" yaml:"code"`
	DurationUS    int64  `json:"duration_us" yaml:"duration_us"`
	Chain         string `json:"chain" yaml:"chain"`
	Seq           int64  `json:"seq" yaml:"seq"`
	Authenticated bool   `json:"authenticated" yaml:"authenticated"`
}

// auditListDoc is the -o json|yaml form of audit list.
type auditListDoc struct {
	Records []auditRecordDoc `json:"records" yaml:"records"`
}

// verifyDoc is the -o json|yaml form of audit verify.
type verifyDoc struct {
	OK                     bool       `json:"ok" yaml:"ok"`
	Chains                 []chainDoc `json:"chains" yaml:"chains"`
	UnauthenticatedRecords int64      `json:"unauthenticated_records" yaml:"unauthenticated_records"`
}

// chainDoc is the verdict on one chain.
type chainDoc struct {
	Chain       string `json:"chain" yaml:"chain"`
	Records     int64  `json:"records" yaml:"records"`
	OK          bool   `json:"ok" yaml:"ok"`
	BadRecordID int64  `json:"bad_record_id" yaml:"bad_record_id"`
	BadSeq      int64  `json:"bad_seq" yaml:"bad_seq"`
	Problem     string `json:"problem" yaml:"problem"`
}

// pruneDoc is the -o json|yaml form of audit prune.
type pruneDoc struct {
	Before      string `json:"before" yaml:"before"`
	Deleted     int64  `json:"deleted" yaml:"deleted"`
	Checkpoints int64  `json:"checkpoints" yaml:"checkpoints"`
}

// writeAuditRecords renders audit records in the order given (newest
// first). The table shows times to the second and the RPC's method name.
func writeAuditRecords(w io.Writer, format string, records []*nexusv1.AuditRecord) error {
	if encoded(format) {
		doc := auditListDoc{Records: make([]auditRecordDoc, 0, len(records))}
		for _, r := range records {
			doc.Records = append(doc.Records, auditRecordDoc{
				ID:            r.GetId(),
				Time:          formatTimeNano(r.GetTime()),
				RequestID:     r.GetRequestId(),
				Caller:        r.GetCaller(),
				Peer:          r.GetPeer(),
				RPC:           r.GetRpc(),
				Target:        r.GetTarget(),
				Decision:      r.GetDecision(),
				Reason:        r.GetReason(),
				Code:          r.GetCode(),
				DurationUS:    r.GetDurationUs(),
				Chain:         r.GetChain(),
				Seq:           r.GetSeq(),
				Authenticated: r.GetAuthenticated(),
			})
		}
		return writeDoc(w, format, doc)
	}
	if len(records) == 0 {
		return writeLine(w, "no audit records match")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TIME\tDECISION\tCODE\tCALLER\tRPC\tTARGET\tREASON\tDURATION\n")
	for _, r := range records {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			orDash(formatTime(r.GetTime())),
			orDash(printable(r.GetDecision())),
			orDash(printable(r.GetCode())),
			orDash(printable(r.GetCaller())),
			orDash(printable(methodName(r.GetRpc()))),
			orDash(printable(r.GetTarget())),
			orDash(printable(r.GetReason())),
			formatMicros(r.GetDurationUs()))
	}
	return flush(tw)
}

// writeAuditMore tells, on stderr, that more records match than --limit
// let list print.
func writeAuditMore(w io.Writer, limit int) {
	fmt.Fprintf(w, "spike: note: showing the newest %d records; more match: raise --limit (0 for all) or narrow the filters\n", limit)
}

// writeVerify renders the verdict on the audit trail: a line per chain, a
// summary and a note on the records that carry no MAC.
func writeVerify(w io.Writer, format string, r *nexusv1.VerifyAuditTrailResponse) error {
	if encoded(format) {
		doc := verifyDoc{OK: r.GetOk(), Chains: make([]chainDoc, 0, len(r.GetChains())), UnauthenticatedRecords: r.GetUnauthenticatedRecords()}
		for _, c := range r.GetChains() {
			doc.Chains = append(doc.Chains, chainDoc{
				Chain:       c.GetChain(),
				Records:     c.GetRecords(),
				OK:          c.GetOk(),
				BadRecordID: c.GetBadRecordId(),
				BadSeq:      c.GetBadSeq(),
				Problem:     c.GetProblem(),
			})
		}
		return writeDoc(w, format, doc)
	}
	var (
		b       strings.Builder
		records int64
		failed  int
	)
	for _, c := range r.GetChains() {
		records += c.GetRecords()
		chain := orDash(printable(c.GetChain()))
		if c.GetOk() {
			fmt.Fprintf(&b, "chain %s: ok, %s\n", chain, count(c.GetRecords(), "record", "records"))
			continue
		}
		failed++
		at := fmt.Sprintf("record %d", c.GetBadRecordId())
		if c.GetBadRecordId() == 0 {
			at = "a missing record"
		}
		fmt.Fprintf(&b, "chain %s: FAILED at %s (seq %d): %s\n", chain, at, c.GetBadSeq(), orDash(printable(c.GetProblem())))
	}
	chains := len(r.GetChains())
	switch {
	case failed > 0:
		fmt.Fprintf(&b, "audit trail FAILED verification: %d of %s failed\n", failed, count(int64(chains), "chain", "chains"))
	case !r.GetOk():
		b.WriteString("audit trail FAILED verification\n")
	default:
		fmt.Fprintf(&b, "audit trail ok: %s, %s\n", count(int64(chains), "chain", "chains"), count(records, "record", "records"))
	}
	if n := r.GetUnauthenticatedRecords(); n > 0 {
		fmt.Fprintf(&b, "note: %s written while SPIKE was sealed: recorded, but without a MAC, so verify cannot vouch for them\n",
			count(n, "record was", "records were"))
	}
	return writeLine(w, "%s", strings.TrimSuffix(b.String(), "\n"))
}

// trailOK reports whether the verdict is that every chain verifies.
func trailOK(r *nexusv1.VerifyAuditTrailResponse) bool {
	if !r.GetOk() {
		return false
	}
	for _, c := range r.GetChains() {
		if !c.GetOk() {
			return false
		}
	}
	return true
}

// writePrune renders what prune deleted.
func writePrune(w io.Writer, format string, doc pruneDoc) error {
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	return writeLine(w, "deleted %s, wrote %s", count(doc.Deleted, "record", "records"), count(doc.Checkpoints, "checkpoint", "checkpoints"))
}

// methodName returns the method of a procedure: GetSecret for
// /spike.nexus.v1.SecretService/GetSecret.
func methodName(procedure string) string {
	if i := strings.LastIndexByte(procedure, '/'); i >= 0 && i < len(procedure)-1 {
		return procedure[i+1:]
	}
	return procedure
}

// formatMicros renders a duration in microseconds briefly: 850µs, 1.2ms,
// 2.35s.
func formatMicros(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case us < 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", us)
	case us < 999_950: // below what %.1f would round up to 1000.0ms
		return fmt.Sprintf("%.1fms", float64(us)/1000)
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// formatTimeNano renders a timestamp as RFC 3339 in UTC with as many
// fractional digits as it has, or "" when absent.
func formatTimeNano(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

// count renders n with the singular or plural noun: "1 record", "3 records".
func count(n int64, singular, plural string) string {
	if n == 1 {
		return "1 " + singular
	}
	return fmt.Sprintf("%d %s", n, plural)
}
