package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/engine"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Bounds of one watch response and stream.
const (
	// maxWatchEvents and maxWatchBytes bound the events of one response
	// (one event with the largest data is sent alone).
	maxWatchEvents = 100
	maxWatchBytes  = 1 << 20
	// watchLifetime ends a stream cleanly before maxStreamDuration: the
	// client resumes with its cursor (and a fresh SVID check).
	watchLifetime = maxStreamDuration - time.Minute
)

// WatchSecrets streams the changes under a prefix, read from the change
// log (which any Nexus replica writes), each checked against the secret's
// sealed head, each sent only if the caller may read its path at that
// moment, and each audited before it is sent.
func (s secretServer) WatchSecrets(ctx context.Context, req *connect.Request[nexusv1.WatchSecretsRequest],
	stream *connect.ServerStream[nexusv1.WatchSecretsResponse]) error {
	start := time.Now()
	markObserved(ctx)
	ctx, cancel := context.WithTimeout(ctx, maxStreamDuration)
	defer cancel()
	procedure := req.Spec().Procedure
	c := &call{id: newRequestID()}
	c.caller, _ = mtls.Caller(ctx)
	c.record = s.trail.Begin(ctx, c.id, c.caller.String(), req.Peer().Addr, procedure)
	c.record.SetTarget(req.Msg.GetPrefix())
	stream.ResponseHeader().Set("Spike-Request-Id", c.id)

	reason, err := s.decide(ctx, c, procedure, req.Header(), req.Msg)
	if err != nil {
		c.record.Deny(err.Error())
	} else {
		c.record.Allow(reason)
		w := &watcher{s: s, c: c, peer: req.Peer().Addr, procedure: procedure, m: req.Msg, stream: stream}
		err = w.run(ctx)
	}
	err = s.toConnect(err, c.id)
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	// The stream's closing record (its opening and each event have
	// records of their own).
	if aerr := s.trail.Finish(ctx, c.record, code); aerr != nil {
		s.log.Error("audit record of a closed watch stream not written", "request_id", c.id, "error", aerr.Error())
	}
	elapsed := time.Since(start)
	s.log.Info("request", "request_id", c.id, "caller", c.caller.String(), "procedure", procedure,
		"peer", req.Peer().Addr, "code", code, "duration_ms", float64(elapsed.Microseconds())/1000)
	s.metrics.ObserveRequest(rpcLabel(procedure), code, elapsed)
	if err != nil {
		if ce := new(connect.Error); errors.As(err, &ce) {
			ce.Meta().Set("Spike-Request-Id", c.id)
		}
		return err
	}
	return nil
}

// watcher is one WatchSecrets stream.
type watcher struct {
	s         secretServer
	c         *call
	peer      string
	procedure string
	m         *nexusv1.WatchSecretsRequest
	stream    *connect.ServerStream[nexusv1.WatchSecretsResponse]
	identity  string
	pos       postgres.Position
	// start holds back the rows that ended before a stream "from now"
	// opened, until pos passes it (see startMark).
	start *startMark
	// markSent: the last cursor sent carries the start mark (see run).
	markSent bool
	// lastXID and xidPaths: the paths of the last transaction's rows seen,
	// so that a copy of a row (same transaction, same path) is dropped.
	lastXID  uint64
	xidPaths map[string]bool
	// tokenChecked is when an admin's token was last verified.
	tokenChecked time.Time
}

// tokenRecheck is how long an admin stream relies on its last check of
// the admin token (a database read).
const tokenRecheck = time.Second

func (w *watcher) run(ctx context.Context) error {
	s := w.s
	if err := secret.ValidatePrefix(w.m.GetPrefix()); err != nil {
		return err
	}
	if len(w.m.GetCursor()) > maxCursorLen {
		return fault.New(fault.Invalid, "cursor: is not a cursor from WatchSecrets")
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return err
	}
	leave, err := s.watch.join(w.c.caller.String())
	if err != nil {
		return err
	}
	defer leave()

	st, err := s.store.ChangeLogState(ctx)
	if err != nil {
		return err
	}
	w.identity = st.Identity
	if cur := w.m.GetCursor(); cur != "" {
		if w.pos, w.start, err = openCursor(cur, st); err != nil {
			return err
		}
	} else {
		// From now: every transaction that ends from now on.
		w.pos, w.start = startAt(st)
	}
	// The stream's opening, audited before anything is sent.
	if err := w.audit(ctx, []*nexusv1.SecretEvent{nil}); err != nil {
		return err
	}
	// The first response: the starting cursor, so that a client holds
	// one even if nothing changes.
	if err := w.send(ctx, nil, w.pos); err != nil {
		return err
	}

	lifetime := time.NewTimer(watchLifetime)
	defer lifetime.Stop()
	heartbeat := time.NewTicker(s.watch.cfg.Heartbeat)
	defer heartbeat.Stop()
	lastEvent := time.Now()
	var epoch = -1
	for {
		r := s.watch.read(w.pos, maxWatchEvents)
		if r.down {
			return fault.New(fault.Unavailable, "the change log cannot be read now: resume with the last cursor")
		}
		if r.ready {
			if r.identity != w.identity {
				return fault.New(fault.OutOfRange, "the change log now belongs to another database (restored or replaced): start again without a cursor and read the secrets afresh")
			}
			if epoch >= 0 && r.epoch != epoch {
				return fault.New(fault.Unavailable, "the watch was interrupted on this Nexus: resume with the last cursor")
			}
			epoch = r.epoch
		}
		rows, next, more := r.rows, r.next, r.more
		direct := r.ready && !r.ok
		if direct {
			// Behind the hub's buffer: read the database directly.
			var settled uint64
			if rows, settled, err = s.store.Changes(ctx, w.pos, maxWatchEvents); err != nil {
				return err
			}
			more = len(rows) == maxWatchEvents
			next = w.pos
			if len(rows) > 0 {
				next = rows[len(rows)-1].Position
			}
			if !more {
				next = later(next, postgres.Position{XID: settled})
			}
		}
		progressed := len(rows) > 0 || w.pos != next
		if progressed {
			sent, err := w.deliver(ctx, rows, next)
			if err != nil {
				return err
			}
			if sent {
				lastEvent = time.Now()
			}
		}
		// Past the start mark: a plain cursor at once, which a Nexus of
		// the previous release (rolling upgrades) can resume from too.
		if w.markSent && w.start == nil {
			if err := w.send(ctx, nil, w.pos); err != nil {
				return err
			}
		}
		// More to read, or read from the database past where the hub's
		// buffer starts: read on (the hub's next wake may be long past).
		if more || direct && progressed {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lifetime.C:
			return nil // the client resumes with its cursor
		case <-r.wait:
		case <-heartbeat.C:
			if time.Since(lastEvent) >= s.watch.cfg.IdleTimeout {
				return nil
			}
			if err := w.stillAllowed(ctx); err != nil {
				return err
			}
			if err := w.send(ctx, nil, w.pos); err != nil {
				return err
			}
		}
	}
}

// cursor encodes a position of this database's change log.
func (w *watcher) cursor(p postgres.Position) string {
	return encodeCursor(w.identity, p, w.start)
}

// stillAllowed checks, before events or a heartbeat are sent, that the
// caller may still watch: SPIKE unsealed, an admin's token still valid
// (checked at most every tokenRecheck), the policies current.
func (w *watcher) stillAllowed(ctx context.Context) error {
	s := w.s
	if err := s.keeper.Ready(ctx); err != nil {
		return err
	}
	if w.c.admin {
		if time.Since(w.tokenChecked) < tokenRecheck {
			return nil
		}
		if err := s.tokens.Verify(ctx, w.c.token, w.c.caller); err != nil {
			return err
		}
		w.tokenChecked = time.Now()
		return nil
	}
	return s.policies.EnsureFresh(ctx)
}

// mayRead reports whether the caller may read path now.
func (w *watcher) mayRead(set *policy.Set, path string) bool {
	return w.c.admin || set.Allowed(w.c.caller, path).Has(policy.Read)
}

// deliver checks rows (up to next) and sends the events the caller may
// see, in responses within the bounds; it reports whether it sent any.
func (w *watcher) deliver(ctx context.Context, rows []postgres.ChangeRow, next postgres.Position) (bool, error) {
	if err := w.stillAllowed(ctx); err != nil {
		return false, err
	}
	var set *policy.Set
	if !w.c.admin {
		set = w.s.policies.Set()
	}
	heads := map[string]headState{}
	var (
		events []*nexusv1.SecretEvent
		size   int
		sent   bool
	)
	flush := func(at postgres.Position) error {
		if len(events) == 0 {
			return nil
		}
		if err := w.audit(ctx, events); err != nil {
			return err
		}
		if err := w.send(ctx, events, at); err != nil {
			return err
		}
		events, size, sent = nil, 0, true
		return nil
	}
	prefix := w.m.GetPrefix()
	for i, r := range rows {
		if w.start.holds(r.XID) || !strings.HasPrefix(r.Path, prefix) || !w.mayRead(set, r.Path) {
			continue
		}
		ev, err := w.check(ctx, r, heads)
		if err != nil {
			return sent, err
		}
		if ev == nil {
			continue
		}
		n := proto.Size(ev)
		if len(events) > 0 && (len(events) == maxWatchEvents || size+n > maxWatchBytes) {
			if err := flush(rows[i-1].Position); err != nil {
				return sent, err
			}
		}
		events = append(events, ev)
		size += n
	}
	if err := flush(next); err != nil {
		return sent, err
	}
	w.moveTo(next)
	return sent, nil
}

// headState is a secret's authenticated state, read once per delivery.
type headState struct {
	found  bool
	meta   engine.Metadata
	states map[int64]secret.State
}

// check turns a change log row into the event to send, or nil when the
// row does not agree with the secret's authenticated state: forged,
// edited, or undone by a later change (whose own row comes later). The
// event's current version and data come from the authenticated state.
func (w *watcher) check(ctx context.Context, r postgres.ChangeRow, heads map[string]headState) (*nexusv1.SecretEvent, error) {
	s := w.s
	if !wellFormed(r) {
		w.dropped(r, "malformed")
		return nil, nil
	}
	h, ok := heads[r.Path]
	if !ok {
		m, err := s.engine.Metadata(ctx, r.Path)
		switch {
		case err == nil:
			h = headState{found: true, meta: m, states: map[int64]secret.State{}}
			for _, v := range m.Versions {
				st := secret.Active
				switch {
				case v.DestroyedAt != nil:
					st = secret.Destroyed
				case v.DeletedAt != nil:
					st = secret.Deleted
				}
				h.states[v.Version] = st
			}
		case fault.CodeOf(err) == fault.NotFound:
		case fault.CodeOf(err) == fault.DataLoss:
			w.dropped(r, "the secret's stored state does not authenticate")
			heads[r.Path] = headState{}
			return nil, nil
		default:
			return nil, err
		}
		heads[r.Path] = h
	}
	// A row is bound to the incarnation of the secret it changed (a
	// removal to none): the rows of an earlier incarnation of a secret
	// removed and created again do not check against the current one.
	var incarnation []byte
	if r.Kind != secret.ChangeRemoved {
		if !h.found {
			return nil, nil // removed since: its REMOVED row follows
		}
		incarnation = h.meta.Incarnation
	}
	ok, err := s.trail.CheckChange(ctx, r.XID, r.Path, incarnation, int16(r.Kind), r.Versions, r.MAC)
	if err != nil {
		return nil, err
	}
	if !ok {
		w.dropped(r, "does not authenticate (forged, or of an earlier incarnation of the secret)")
		return nil, nil
	}
	// One row per path and transaction: another is a copy.
	if r.XID != w.lastXID || w.xidPaths == nil {
		w.lastXID, w.xidPaths = r.XID, map[string]bool{}
	}
	if w.xidPaths[r.Path] {
		w.dropped(r, "repeats a row of its transaction")
		return nil, nil
	}
	w.xidPaths[r.Path] = true
	ev := &nexusv1.SecretEvent{Path: r.Path, Kind: nexusv1.ChangeKind(r.Kind), Versions: r.Versions,
		CommittedAt: timestamppb.New(r.At)}
	if r.Kind == secret.ChangeRemoved {
		if h.found {
			return nil, nil // created again since: its own rows follow
		}
		return ev, nil
	}
	if !h.found {
		return nil, nil // removed since: its REMOVED row follows
	}
	ev.Version = h.meta.CurrentVersion
	want := map[secret.ChangeKind]secret.State{
		secret.ChangeDeleted: secret.Deleted, secret.ChangeUndeleted: secret.Active, secret.ChangeDestroyed: secret.Destroyed,
	}
	switch r.Kind {
	case secret.ChangeWritten:
		if len(r.Versions) != 1 {
			w.dropped(r, "malformed versions")
			return nil, nil
		}
		// Versions are numbered 1 to the current one: any of them was
		// written, also one pruned since (it is sent without data).
		v := r.Versions[0]
		if v > h.meta.CurrentVersion {
			w.dropped(r, "names a version the secret does not have")
			return nil, nil
		}
		st, kept := h.states[v]
		if w.m.GetIncludeData() && kept && st == secret.Active {
			_, data, err := s.engine.Read(ctx, r.Path, v)
			switch {
			case err == nil:
				ev.Data = data
			case fault.CodeOf(err) == fault.NotFound:
				// Deleted or pruned since: no data; that change's row follows.
			case fault.CodeOf(err) == fault.DataLoss:
				w.dropped(r, "its version does not authenticate")
				return nil, nil
			default:
				return nil, err
			}
		}
	case secret.ChangeDeleted, secret.ChangeUndeleted, secret.ChangeDestroyed:
		if len(r.Versions) == 0 {
			w.dropped(r, "malformed versions")
			return nil, nil
		}
		for _, v := range r.Versions {
			if st, kept := h.states[v]; !kept || st != want[r.Kind] {
				return nil, nil // changed again since (or forged): the later row tells
			}
		}
	case secret.ChangeRemoved: // handled above
	case secret.ChangeMetadata:
		if len(r.Versions) != 0 {
			w.dropped(r, "malformed versions")
			return nil, nil
		}
	}
	return ev, nil
}

// wellFormed reports whether a row names a valid path, a known kind and
// at most the versions one request can touch, each a version number.
func wellFormed(r postgres.ChangeRow) bool {
	if secret.ValidatePath(r.Path) != nil || !r.Kind.Valid() || len(r.Versions) > secret.MaxVersionsPerRequest {
		return false
	}
	for _, v := range r.Versions {
		if v < 1 {
			return false
		}
	}
	return true
}

// dropped logs a change log row that cannot be true (never a value).
func (w *watcher) dropped(r postgres.ChangeRow, why string) {
	w.s.log.Warn("watch: change log row dropped", "request_id", w.c.id, "path", r.Path,
		"kind", int(r.Kind), "xid", r.XID, "row", r.ID, "why", why)
}

// audit writes one record per event (nil: the stream's opening) and waits
// for all of them: nothing is sent that is not audited.
func (w *watcher) audit(ctx context.Context, events []*nexusv1.SecretEvent) error {
	s := w.s
	errs := make([]error, len(events))
	var wg sync.WaitGroup
	for i, ev := range events {
		e := s.trail.Begin(ctx, w.c.id, w.c.caller.String(), w.peer, w.procedure)
		if ev == nil {
			e.SetTarget(w.m.GetPrefix())
			e.Allow(fmt.Sprintf("watch opened (include_data %t, resumed %t)", w.m.GetIncludeData(), w.m.GetCursor() != ""))
		} else {
			e.SetTarget(ev.GetPath())
			e.Allow(fmt.Sprintf("watch event %s, version %d, versions %v", ev.GetKind(), ev.GetVersion(), ev.GetVersions()))
		}
		wg.Go(func() { errs[i] = s.trail.Finish(ctx, e, "ok") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fault.Wrap(fault.Unavailable, err, "%s", withheld(err))
	}
	return nil
}

func (w *watcher) send(_ context.Context, events []*nexusv1.SecretEvent, at postgres.Position) error {
	if err := w.stream.Send(&nexusv1.WatchSecretsResponse{Events: events, Cursor: w.cursor(at)}); err != nil {
		return fault.Wrap(fault.Unavailable, err, "the watch stream broke: resume with the last cursor")
	}
	w.moveTo(at)
	w.markSent = w.start != nil
	return nil
}

// moveTo moves the stream to p, past everything before it.
func (w *watcher) moveTo(p postgres.Position) {
	w.pos, w.start = p, w.start.after(p)
}

// watchDir is the directory a watch request looks into, for opening the
// stream: its prefix up to the last '/'.
func watchDir(msg any) string {
	m, ok := msg.(*nexusv1.WatchSecretsRequest)
	if !ok {
		return ""
	}
	p := m.GetPrefix()
	return p[:strings.LastIndexByte(p, '/')+1]
}
