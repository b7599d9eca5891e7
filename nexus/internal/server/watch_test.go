package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"

	"github.com/spike-dev/spike/nexus/internal/app"
)

// watchStream is an open WatchSecrets stream whose responses arrive on a
// channel.
type watchStream struct {
	t      testing.TB
	cancel context.CancelFunc
	resps  chan *nexusv1.WatchSecretsResponse
	done   chan error
	cursor string
}

func (s *stack) watch(id spiffeid.ID, m *nexusv1.WatchSecretsRequest) *watchStream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.t.Context())
	req := connect.NewRequest(m)
	if tok := s.tokenFor(id); tok != "" {
		req.Header().Set("Authorization", "Bearer "+tok)
	}
	st, err := s.secretsWith(id, "").WatchSecrets(ctx, req)
	if err != nil {
		cancel()
		s.t.Fatalf("watch: %v", err)
	}
	w := &watchStream{t: s.t, cancel: cancel, resps: make(chan *nexusv1.WatchSecretsResponse, 1000), done: make(chan error, 1)}
	go func() {
		defer st.Close()
		for st.Receive() {
			w.resps <- st.Msg()
		}
		w.done <- st.Err()
	}()
	s.t.Cleanup(cancel)
	// The first response carries the starting cursor.
	w.next(5 * time.Second)
	return w
}

// next returns the next response, or nil after timeout.
func (w *watchStream) next(timeout time.Duration) *nexusv1.WatchSecretsResponse {
	w.t.Helper()
	select {
	case r := <-w.resps:
		if r.GetCursor() == "" {
			w.t.Fatal("a response without a cursor")
		}
		w.cursor = r.GetCursor()
		return r
	case err := <-w.done:
		w.t.Fatalf("watch ended: %v", err)
	case <-time.After(timeout):
	}
	return nil
}

// event is what a test compares of an event.
type event struct {
	Path     string
	Kind     nexusv1.ChangeKind
	Version  int64
	Versions []int64
	Data     map[string]string
}

// events collects n events, failing after timeout.
func (w *watchStream) events(n int, timeout time.Duration) []event {
	w.t.Helper()
	var got []event
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		r := w.next(time.Until(deadline))
		if r == nil {
			w.t.Fatalf("after %v: %d events %v, want %d", timeout, len(got), got, n)
		}
		for _, e := range r.GetEvents() {
			got = append(got, event{e.GetPath(), e.GetKind(), e.GetVersion(), e.GetVersions(), e.GetData()})
		}
	}
	return got
}

// quiet fails if an event arrives within d.
func (w *watchStream) quiet(d time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r := w.next(time.Until(deadline))
		if r != nil && len(r.GetEvents()) > 0 {
			w.t.Fatalf("unexpected events %v", r.GetEvents())
		}
	}
}

// Every kind of change reaches a watcher once, in order, checked and with
// data from the authenticated read; changes outside the prefix do not; a
// reconnect with a cursor resumes without gaps or repeats.
func TestWatchSecrets(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	w := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "w/", IncludeData: true})
	start := w.cursor

	s.put("w/a", map[string]string{"k": "1"})
	s.put("w/a", map[string]string{"k": "2"})
	s.put("x/outside", map[string]string{"k": "no"})
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: "w/a", Versions: []int64{1}})))
	must(c.UndeleteSecret(ctx, connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: "w/a", Versions: []int64{1}})))
	must(c.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: "w/a", Versions: []int64{1}})))
	must(c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "w/a", CasRequired: ptr(true)})))
	s.put("w/b", map[string]string{"k": "b"})
	must(c.DeleteSecretMetadata(ctx, connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: "w/b"})))

	want := []event{
		{"w/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{1}, map[string]string{"k": "1"}},
		{"w/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{2}, map[string]string{"k": "2"}},
		// The delete was undone by the next change: only the later one
		// agrees with the head, and it is the one sent.
		{"w/a", nexusv1.ChangeKind_CHANGE_KIND_DESTROYED, 2, []int64{1}, nil},
		{"w/a", nexusv1.ChangeKind_CHANGE_KIND_METADATA_UPDATED, 2, nil, nil},
		{"w/b", nexusv1.ChangeKind_CHANGE_KIND_REMOVED, 0, nil, nil},
	}
	// Delivered live, the delete and undelete may be checked before the
	// destroy lands, and w/b's write before its removal; then they are
	// sent too. Compare what must be there.
	// Live, an event's current version is the one when it was checked,
	// and version 1 has data only if it was checked before its destroy.
	got := w.events(len(want), 10*time.Second)
	got = append(got, drain(w)...)
	var live []event
	for _, e := range without(got, nexusv1.ChangeKind_CHANGE_KIND_DELETED, nexusv1.ChangeKind_CHANGE_KIND_UNDELETED) {
		if e.Path != "w/b" || e.Kind != nexusv1.ChangeKind_CHANGE_KIND_WRITTEN { // w/b's write, if checked before its removal
			live = append(live, e)
		}
	}
	for i := range live {
		if i < len(want) {
			live[i].Version = want[i].Version
		}
	}
	if len(live) > 0 && live[0].Data == nil {
		live[0].Data = want[0].Data
	}
	if d := cmp.Diff(want, live, cmpVersions); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}

	// From the first cursor again: the same changes, checked now (version
	// 1 is destroyed: no data).
	again := s.watchFrom(adminID, "w/", start, true)
	want[0].Data = nil
	if d := cmp.Diff(want, again.events(len(want), 10*time.Second), cmpVersions); d != "" {
		t.Fatalf("resumed from the start (-want +got):\n%s", d)
	}
	again.quiet(500 * time.Millisecond)

	// Disconnect, changes meanwhile, resume with the last cursor.
	last := w.cursor
	w.cancel()
	s.put("w/c", map[string]string{"k": "c1"})
	s.put("w/c", map[string]string{"k": "c2"})
	resumed := s.watchFrom(adminID, "w/", last, false)
	wantC := []event{
		{"w/c", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{1}, nil},
		{"w/c", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{2}, nil},
	}
	if d := cmp.Diff(wantC, resumed.events(2, 10*time.Second), cmpVersions); d != "" {
		t.Fatalf("resumed (-want +got):\n%s", d)
	}
	resumed.quiet(500 * time.Millisecond)
}

var cmpVersions = cmp.Transformer("versions", func(v []int64) []int64 {
	if len(v) == 0 {
		return nil
	}
	return v
})

// drain returns the events that arrive within a short while.
func drain(w *watchStream) []event {
	var got []event
	for {
		r := w.next(500 * time.Millisecond)
		if r == nil {
			return got
		}
		for _, e := range r.GetEvents() {
			got = append(got, event{e.GetPath(), e.GetKind(), e.GetVersion(), e.GetVersions(), e.GetData()})
		}
	}
}

func without(evs []event, kinds ...nexusv1.ChangeKind) []event {
	var out []event
	for _, e := range evs {
		skip := false
		for _, k := range kinds {
			skip = skip || e.Kind == k
		}
		if !skip {
			out = append(out, e)
		}
	}
	return out
}

func (s *stack) watchFrom(id spiffeid.ID, prefix, cursor string, data bool) *watchStream {
	s.t.Helper()
	return s.watch(id, &nexusv1.WatchSecretsRequest{Prefix: prefix, Cursor: cursor, IncludeData: data})
}

// Change log rows forged or edited in the database never produce an event
// that the secret's sealed state does not bear out, nor wrong data.
func TestWatchIgnoresForgedChanges(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	w := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "f/", IncludeData: true})
	s.put("f/a", map[string]string{"k": "1"})
	s.put("f/a", map[string]string{"k": "2"})
	w.events(2, 10*time.Second)

	forged := []string{
		// A version the secret does not have.
		`(pg_current_xact_id(), 'f/a', 1, '{99}')`,
		// A write repeated after a newer one was sent (below).
		// Marks the head does not bear out.
		`(pg_current_xact_id(), 'f/a', 2, '{2}')`,
		`(pg_current_xact_id(), 'f/a', 4, '{1}')`,
		// A removal of a secret that exists; a secret that does not.
		`(pg_current_xact_id(), 'f/a', 6, '{}')`,
		`(pg_current_xact_id(), 'f/ghost', 1, '{1}')`,
		// Malformed rows.
		`(pg_current_xact_id(), 'f/a', 42, '{}')`,
		`(pg_current_xact_id(), 'f/../x', 1, '{1}')`,
		`(pg_current_xact_id(), 'f/a', 1, '{1,2}')`,
		`(pg_current_xact_id(), 'f/a', 5, '{1}')`,
	}
	for _, row := range forged {
		s.exec(`INSERT INTO secret_changes (xid, path, kind, versions) VALUES ` + row)
	}
	// Real rows (with their MACs) replayed in a new transaction, or edited.
	s.exec(`INSERT INTO secret_changes (xid, path, kind, versions, mac)
	        SELECT pg_current_xact_id(), path, kind, versions, mac FROM secret_changes WHERE path = 'f/a' AND versions = '{2}'`)
	s.exec(`INSERT INTO secret_changes (xid, path, kind, versions, mac)
	        SELECT pg_current_xact_id(), path, 2, versions, mac FROM secret_changes WHERE path = 'f/a' AND versions = '{2}' AND kind = 1`)
	s.put("f/a", map[string]string{"k": "3"})
	// The real row of version 3 copied as it is (its own transaction):
	// one event only.
	s.exec(`INSERT INTO secret_changes (xid, path, kind, versions, mac, created_at)
	        SELECT xid, path, kind, versions, mac, created_at FROM secret_changes WHERE path = 'f/a' AND versions = '{3}'`)
	s.put("f/a", map[string]string{"k": "4"})
	want := []event{
		{"f/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 4, []int64{3}, map[string]string{"k": "3"}},
		{"f/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 4, []int64{4}, map[string]string{"k": "4"}},
	}
	got := w.events(2, 10*time.Second)
	// Live, the first write may be checked before the second commits: its
	// current version is then 3.
	if len(got) > 0 && got[0].Version == 3 {
		want[0].Version = 3
	}
	w.quiet(500 * time.Millisecond)
	if d := cmp.Diff(want, got, cmpVersions); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
}

// A watcher that loses read permission on a path receives nothing more
// for it; a workload sees only what it may read; a cursor from another
// database or older than the retained log is refused with OutOfRange; the
// per-caller stream limit holds.
func TestWatchPermissionsAndBounds(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	web := spiffeid.RequireFromString("spiffe://spike.local/app/web")
	s.putPolicy("web-read", web.String(), "p/web/**", "read")

	denied := openErr(t, s, web, &nexusv1.WatchSecretsRequest{Prefix: "q/"})
	if connect.CodeOf(denied) != connect.CodePermissionDenied {
		t.Fatalf("watch where no policy grants read: %v, want PermissionDenied", denied)
	}

	w := s.watch(web, &nexusv1.WatchSecretsRequest{Prefix: "p/", IncludeData: true})
	s.put("p/web/db", map[string]string{"k": "1"})
	s.put("p/other/db", map[string]string{"k": "hidden"})
	s.put("p/web/db", map[string]string{"k": "2"})
	got := w.events(2, 10*time.Second)
	for _, e := range got {
		if e.Path != "p/web/db" {
			t.Fatalf("workload got an event for %s, which it may not read", e.Path)
		}
	}
	if _, err := s.policyClient().DeletePolicy(ctx, connect.NewRequest(&nexusv1.DeletePolicyRequest{Name: "web-read"})); err != nil {
		t.Fatal(err)
	}
	s.put("p/web/db", map[string]string{"k": "3"})
	w.quiet(time.Second)

	// Cursors this database cannot resume from.
	admin := func(cursor string) error {
		return openErr(t, s, adminID, &nexusv1.WatchSecretsRequest{Prefix: "p/", Cursor: cursor})
	}
	forged := []byte(w.cursor)
	if forged[5] == 'A' {
		forged[5] = 'B'
	} else {
		forged[5] = 'A'
	}
	if err := admin(string(forged)); connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("a cursor of another database: %v, want OutOfRange", err)
	}
	if err := admin("not a cursor"); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("garbage cursor: %v, want InvalidArgument", err)
	}
	s.exec(`UPDATE watch_state SET pruned_xid = pg_current_xact_id()`)
	if err := admin(w.cursor); connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("a pruned cursor: %v, want OutOfRange", err)
	}

	// The per-caller limit (8 by default).
	for range 8 {
		s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "p/"})
	}
	if err := admin(""); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a ninth stream: %v, want ResourceExhausted", err)
	}
}

// openErr opens a watch that is expected to fail, and returns its error.
func openErr(t *testing.T, s *stack, id spiffeid.ID, m *nexusv1.WatchSecretsRequest) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := connect.NewRequest(m)
	if tok := s.tokenFor(id); tok != "" {
		req.Header().Set("Authorization", "Bearer "+tok)
	}
	st, err := s.secretsWith(id, "").WatchSecrets(ctx, req)
	if err != nil {
		return err
	}
	defer st.Close()
	for st.Receive() {
		if len(st.Msg().GetEvents()) == 0 {
			continue
		}
		return fmt.Errorf("got events %v", st.Msg().GetEvents())
	}
	if st.Err() == nil {
		return errors.New("the stream ended without an error")
	}
	return st.Err()
}

// Heartbeats carry the cursor past changes the watcher does not get (here:
// outside its prefix), and a stream resumed from a heartbeat's cursor
// neither repeats what came before nor misses what comes after.
func TestWatchHeartbeatsMoveTheCursor(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	w := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "h/"})
	s.put("h/a", map[string]string{"k": "1"})
	w.events(1, 10*time.Second)
	after := w.cursor
	s.put("other/b", map[string]string{"k": "1"})
	var moved string
	for deadline := time.Now().Add(10 * time.Second); moved == "" && time.Now().Before(deadline); {
		if r := w.next(2 * time.Second); r != nil && len(r.GetEvents()) == 0 && r.GetCursor() != after {
			moved = r.GetCursor()
		}
	}
	if moved == "" {
		t.Fatal("no heartbeat moved the cursor past a change outside the prefix")
	}
	w.cancel()
	resumed := s.watchFrom(adminID, "h/", moved, false)
	s.put("h/c", map[string]string{"k": "1"})
	want := []event{{"h/c", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 1, []int64{1}, nil}}
	if d := cmp.Diff(want, resumed.events(1, 10*time.Second), cmpVersions); d != "" {
		t.Fatalf("resumed from a heartbeat (-want +got):\n%s", d)
	}
	resumed.quiet(1500 * time.Millisecond)
}

// A watcher that resumes after a secret was removed and created again gets
// the new incarnation's versions once each, with their data, and none of
// the earlier incarnation's rows again under the new secret.
func TestWatchResumesAcrossARemoval(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	w := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "r/"})
	start := w.cursor
	w.cancel()

	s.put("r/a", map[string]string{"k": "old1"})
	s.put("r/a", map[string]string{"k": "old2"})
	if _, err := s.secrets(adminID).DeleteSecretMetadata(t.Context(),
		connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: "r/a"})); err != nil {
		t.Fatal(err)
	}
	s.put("r/a", map[string]string{"k": "new1"})
	s.put("r/a", map[string]string{"k": "new2"})

	resumed := s.watchFrom(adminID, "r/", start, true)
	got := drain(resumed)
	var written []event
	for _, e := range got {
		if e.Kind == nexusv1.ChangeKind_CHANGE_KIND_WRITTEN {
			written = append(written, e)
		}
	}
	want := []event{
		{"r/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{1}, map[string]string{"k": "new1"}},
		{"r/a", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 2, []int64{2}, map[string]string{"k": "new2"}},
	}
	if d := cmp.Diff(want, written, cmpVersions); d != "" {
		t.Fatalf("written events after resuming across a removal (-want +got):\n%s\nall events: %v", d, got)
	}
}

// end waits for the stream to end, dropping its responses, and returns
// how it ended (nil: cleanly).
func (w *watchStream) end(timeout time.Duration) error {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case <-w.resps:
		case err := <-w.done:
			return err
		case <-deadline:
			w.t.Fatalf("the stream did not end within %v", timeout)
			return nil
		}
	}
}

// watchRecord is what a test reads of an audit record.
type watchRecord struct {
	RequestID, Target, Decision, Reason, Code string
}

// A stream's opening, each event it sends and its end are audit records
// naming the caller, the procedure and the target, never a value; an event
// the caller may not read is neither sent nor audited. A stream that sends
// no event for the idle timeout ends cleanly (OK: the client resumes with
// its cursor), as does one whose last event is that old.
func TestWatchAuditAndIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 5 * time.Second
	s := newStackConfigured(t, "", quietLog(), func(cfg *app.Config) { cfg.Watch.IdleTimeout = idle })
	s.init()
	web := spiffeid.RequireFromString("spiffe://spike.local/app/web")
	s.putPolicy("web-read", web.String(), "p/web/**", "read")

	quiet := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "idle/"})
	w := s.watch(web, &nexusv1.WatchSecretsRequest{Prefix: "p/", IncludeData: true})
	values := []string{"WATCH-AUDIT-VALUE-1", "WATCH-AUDIT-VALUE-2", "WATCH-AUDIT-HIDDEN"}
	s.put("p/web/db", map[string]string{"k": values[0]})
	s.put("p/other/db", map[string]string{"k": values[2]})
	s.put("p/web/db", map[string]string{"k": values[1]})
	got := w.events(2, 10*time.Second)
	for i, e := range got {
		if e.Path != "p/web/db" || e.Data["k"] != values[i] {
			t.Fatalf("event %d: %v, want p/web/db with %s", i, e, values[i])
		}
	}

	// Both streams end by themselves, cleanly.
	if err := quiet.end(time.Minute); err != nil {
		t.Errorf("a stream without events ended with %v, want a clean end after the idle timeout", err)
	}
	if err := w.end(time.Minute); err != nil {
		t.Errorf("a stream idle since its last event ended with %v, want a clean end", err)
	}

	ctx := t.Context()
	rows, err := s.db().Query(ctx, `SELECT request_id, target, decision, reason, code FROM audit_log
		WHERE caller = $1 AND procedure = $2 ORDER BY id`, web.String(), nexusv1connect.SecretServiceWatchSecretsProcedure)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[watchRecord])
	if err != nil {
		t.Fatal(err)
	}
	var opened, closed, events []watchRecord
	for _, r := range recs {
		switch {
		case r.Target == "p/" && strings.HasPrefix(r.Reason, "watch opened"):
			opened = append(opened, r)
		case r.Target == "p/":
			closed = append(closed, r)
		default:
			events = append(events, r)
		}
		if r.RequestID != recs[0].RequestID {
			t.Errorf("record %+v is not of the stream's request %s", r, recs[0].RequestID)
		}
		if r.Decision != "allow" || r.Code != "ok" {
			t.Errorf("record %+v: want decision allow, code ok", r)
		}
	}
	if len(opened) != 1 || opened[0].Reason != "watch opened (include_data true, resumed false)" {
		t.Errorf("opening records %+v, want one saying the stream opened with data, not resumed", opened)
	}
	if len(closed) != 1 {
		t.Errorf("closing records %+v, want one", closed)
	}
	// One record per event sent (its current version is the one when it
	// was checked), none for p/other/db, which web may not read.
	if len(events) != 2 {
		t.Fatalf("event records %+v, want the 2 events sent", events)
	}
	// The events of one poll are audited together, their records in any
	// order: one names versions [1], the other versions [2].
	versions := func(r watchRecord) string { return r.Reason[strings.LastIndex(r.Reason, "versions")+1:] }
	slices.SortFunc(events, func(a, b watchRecord) int { return strings.Compare(versions(a), versions(b)) })
	for i, r := range events {
		want := regexp.MustCompile(fmt.Sprintf(`^watch event CHANGE_KIND_WRITTEN, version [12], versions \[%d\]$`, i+1))
		if r.Target != "p/web/db" || !want.MatchString(r.Reason) {
			t.Errorf("event record %d: %+v, want target p/web/db and a reason matching %s", i, r, want)
		}
	}

	var dump string
	if err := s.db().QueryRow(ctx, `SELECT string_agg(t::text, ' ') FROM audit_log t`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if strings.Contains(dump, v) {
			t.Errorf("the audit log contains the value %q", v)
		}
	}
}

// A stream without a cursor starts with the writes that end after it
// opened, even while an older transaction still runs (the settled mark
// is behind it): a write that had ended before comes neither on the
// stream nor on one resumed from its first cursor. That cursor carries
// the start mark; once past it the stream sends a plain cursor at once,
// which a Nexus of the previous release reads too.
func TestWatchFromNowLeavesOutEarlierWrites(t *testing.T) {
	t.Parallel()
	// Heartbeats far apart: the plain cursor must come without one.
	s := newStackConfigured(t, "", quietLog(), func(c *app.Config) { c.Watch.Heartbeat = time.Minute })
	s.init()
	ctx := t.Context()
	blocker, err := s.db().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := blocker.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	s.put("n/before", map[string]string{"k": "1"})

	w := s.watch(adminID, &nexusv1.WatchSecretsRequest{Prefix: "n/"})
	opened := w.cursor
	if v := cursorVersion(t, opened); v != 2 {
		t.Fatalf("first cursor of version %d while a transaction runs, want 2 (with the start mark)", v)
	}
	if err := blocker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); cursorVersion(t, w.cursor) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("no plain cursor after the start mark was passed")
		}
		if r := w.next(time.Until(deadline)); r != nil && len(r.GetEvents()) > 0 {
			t.Fatalf("unexpected events %v", r.GetEvents())
		}
	}
	s.put("n/after", map[string]string{"k": "1"})
	want := []event{{"n/after", nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, 1, []int64{1}, nil}}
	if d := cmp.Diff(want, w.events(1, 10*time.Second), cmpVersions); d != "" {
		t.Fatalf("from now (-want +got):\n%s", d)
	}
	w.quiet(1500 * time.Millisecond)
	w.cancel()

	resumed := s.watchFrom(adminID, "n/", opened, false)
	if d := cmp.Diff(want, resumed.events(1, 10*time.Second), cmpVersions); d != "" {
		t.Fatalf("resumed from the first cursor (-want +got):\n%s", d)
	}
	resumed.quiet(1500 * time.Millisecond)
}

// cursorVersion is the format version of a WatchSecrets cursor.
func cursorVersion(t *testing.T, cursor string) byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) == 0 {
		t.Fatalf("cursor %q: %v", cursor, err)
	}
	return b[0]
}
