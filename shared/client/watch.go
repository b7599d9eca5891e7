package client

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/mtls"
)

// EventKind says what a change did to a secret.
type EventKind int

// The kinds of change.
const (
	// KindHeartbeat is no change: a response of Nexus without events,
	// yielded only with WatchOptions.Heartbeats. It carries the cursor.
	KindHeartbeat EventKind = iota
	// KindWritten: a new version was written (put, patch or rollback).
	KindWritten
	// KindDeleted: versions were soft-deleted.
	KindDeleted
	// KindUndeleted: soft-deleted versions were restored.
	KindUndeleted
	// KindDestroyed: versions were destroyed.
	KindDestroyed
	// KindMetadataUpdated: settings or custom metadata changed.
	KindMetadataUpdated
	// KindRemoved: the secret and all its versions were removed.
	KindRemoved
)

var kindNames = map[EventKind]string{
	KindHeartbeat: "heartbeat",
	KindWritten:   "written", KindDeleted: "deleted", KindUndeleted: "undeleted",
	KindDestroyed: "destroyed", KindMetadataUpdated: "metadata-updated", KindRemoved: "removed",
}

func (k EventKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Event is one committed change to one secret.
type Event struct {
	Path string
	Kind EventKind
	// Version is the secret's current version (0 when it has none, or was
	// removed): Nexus reports the version current when it sends the
	// event, which a later write may have passed. The version a change
	// made or touched is in Versions.
	Version int64
	// Versions are the versions the change touched; for KindWritten, the
	// one it wrote.
	Versions    []int64
	CommittedAt time.Time
	// Data is the new version's data, for KindWritten with
	// WatchOptions.IncludeData.
	Data map[string]string
	// Cursor, when not empty, resumes a watch right after this event
	// (WatchOptions.Cursor): keep the last one to carry on where a
	// program stopped. Nexus sends events in groups that share one
	// position, so only the last event of a group has a cursor; resuming
	// from an earlier cursor replays the rest of the group.
	Cursor string
}

// WatchOptions changes a watch.
type WatchOptions struct {
	// Cursor resumes after the event that carried it; empty starts where
	// Nexus opens the first stream (see Client.Watch): every change that
	// commits from then on.
	Cursor string
	// IncludeData sends the data of each new version with its event.
	IncludeData bool
	// Heartbeats also yields Nexus's responses without events, as events
	// of KindHeartbeat carrying the cursor. Nexus answers each stream at
	// once with one, so the first says that the watch is established: a
	// program can then read the current state and apply the events that
	// follow, missing nothing in between.
	Heartbeats bool
	// Logger, when set, hears of each reconnection and why.
	Logger *slog.Logger
}

// Backoff between reconnections: from watchMinWait, doubling up to
// watchMaxWait, halved at random (jitter); back to the start once a stream
// delivered something.
const (
	watchMinWait = 200 * time.Millisecond
	watchMaxWait = 15 * time.Second
)

// Watch streams the changes to the secrets under prefix that the caller
// may read, in commit order, whichever Nexus replica made them:
//
//	for ev, err := range c.Watch(ctx, "apps/web/", client.WatchOptions{}) {
//		if err != nil {
//			return err // permanent: see below
//		}
//		fmt.Println(ev.Kind, ev.Path, ev.Version)
//	}
//
// When the stream breaks (Nexus restarted, the network failed, the
// stream's idle timeout, SPIKE sealed for a while) Watch reconnects by
// itself, with backoff, from the last cursor Nexus sent (heartbeats carry
// it forward too), so no event is missed or seen twice. A failure that
// reconnecting cannot fix ends the iteration with an *Error:
// ErrPermissionDenied, ErrUnauthenticated, ErrInvalidArgument,
// ErrCursorExpired (the cursor is older than the changes Nexus retains),
// ErrUnimplemented (a Nexus without watches)... It also ends with an error
// when ctx is done (errors.Is(err, context.Canceled)) or the client is
// closed (ErrClosed). Breaking out of the loop ends the stream.
//
// Without a cursor the watch starts when its first stream is established
// (WatchOptions.Heartbeats shows when): every change that commits from
// then on is sent, none that had committed before. A change still being
// written while the stream opened comes when it commits, so a program that
// reads the current state after the first heartbeat and then applies the
// events may see a change it has already read; the versions tell.
func (c *Client) Watch(ctx context.Context, prefix string, opts WatchOptions) iter.Seq2[Event, error] {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(yield func(Event, error) bool) {
		ctx, done, err := c.callCtx(ctx)
		if err != nil {
			yield(Event{}, wrapError("watch", prefix, err))
			return
		}
		defer done()
		w := &watch{client: c, prefix: prefix, cursor: opts.Cursor, data: opts.IncludeData, heartbeats: opts.Heartbeats}
		wait := watchMinWait
		for {
			progressed, stopped, err := w.stream(ctx, yield)
			if stopped {
				return
			}
			switch {
			case c.closed.Err() != nil:
				yield(Event{}, wrapError("watch", prefix, ErrClosed))
				return
			case ctx.Err() != nil:
				code := connect.CodeCanceled
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					code = connect.CodeDeadlineExceeded
				}
				yield(Event{}, wrapError("watch", prefix, connect.NewError(code, ctx.Err())))
				return
			case !reconnectable(err):
				yield(Event{}, wrapError("watch", prefix, err))
				return
			}
			if progressed {
				wait = watchMinWait
			}
			pause := wait/2 + rand.N(wait/2+1) //nolint:gosec // jitter between reconnections, not a secret
			log.Info("spike watch: reconnecting", "prefix", prefix, "after", pause, "reason", err)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			wait = min(2*wait, watchMaxWait)
		}
	}
}

// errStreamEnded is a stream that Nexus ended without an error (its idle
// timeout, or a shutdown): reconnect.
var errStreamEnded = errors.New("nexus ended the stream")

// watch is the state of one Watch across its streams.
type watch struct {
	client *Client
	prefix string
	// cursor is the last cursor Nexus sent (or the one the caller gave).
	cursor     string
	data       bool
	heartbeats bool
}

// stream runs one stream from w.cursor, yielding its events, until it
// fails. progressed says that it delivered at least one response;
// stopped, that the consumer stopped the iteration.
func (w *watch) stream(ctx context.Context, yield func(Event, error) bool) (progressed, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := w.client.stream.WatchSecrets(ctx, connect.NewRequest(&nexusv1.WatchSecretsRequest{
		Prefix: w.prefix, Cursor: w.cursor, IncludeData: w.data,
	}))
	if err != nil {
		return false, false, err
	}
	defer func() { _ = s.Close() }()
	for s.Receive() {
		progressed = true
		msg := s.Msg()
		events := msg.GetEvents()
		if len(events) == 0 && w.heartbeats && !yield(Event{Kind: KindHeartbeat, Cursor: msg.GetCursor()}, nil) {
			return progressed, true, nil
		}
		for i, ev := range events {
			e := eventOf(ev)
			if i == len(events)-1 {
				e.Cursor = msg.GetCursor()
			}
			if !yield(e, nil) {
				return progressed, true, nil
			}
		}
		if msg.GetCursor() != "" {
			w.cursor = msg.GetCursor()
		}
	}
	if err := s.Err(); err != nil {
		return progressed, false, err
	}
	return progressed, false, errStreamEnded
}

// changeKinds maps the kinds on the wire to ours.
var changeKinds = map[nexusv1.ChangeKind]EventKind{
	nexusv1.ChangeKind_CHANGE_KIND_WRITTEN:          KindWritten,
	nexusv1.ChangeKind_CHANGE_KIND_DELETED:          KindDeleted,
	nexusv1.ChangeKind_CHANGE_KIND_UNDELETED:        KindUndeleted,
	nexusv1.ChangeKind_CHANGE_KIND_DESTROYED:        KindDestroyed,
	nexusv1.ChangeKind_CHANGE_KIND_METADATA_UPDATED: KindMetadataUpdated,
	nexusv1.ChangeKind_CHANGE_KIND_REMOVED:          KindRemoved,
}

// kindUnknown is the kind of an event of a kind this client does not know
// (from a newer Nexus); its String is "unknown".
const kindUnknown EventKind = -1

// eventOf converts an event from the wire.
func eventOf(ev *nexusv1.SecretEvent) Event {
	e := Event{
		Path: ev.GetPath(), Kind: kindUnknown, Version: ev.GetVersion(),
		Versions: ev.GetVersions(), Data: ev.GetData(),
	}
	if k, ok := changeKinds[ev.GetKind()]; ok {
		e.Kind = k
	}
	if ev.GetCommittedAt() != nil {
		e.CommittedAt = ev.GetCommittedAt().AsTime()
	}
	return e
}

// reconnectable says whether a stream's failure may go away by itself:
// a broken or refused connection, a stream Nexus ended, Nexus unavailable,
// busy or sealed. A TLS refusal, a refusal of the request (permission,
// argument, expired cursor) and anything else are final.
func reconnectable(err error) bool {
	if errors.Is(err, errStreamEnded) {
		return true
	}
	if refused := (*mtls.ServerRefusedError)(nil); errors.As(err, &refused) {
		return false
	}
	if opErr := (*net.OpError)(nil); errors.As(err, &opErr) && opErr.Op == "remote error" {
		// Nexus refused this client's SVID in the TLS handshake.
		return false
	}
	if !connect.IsWireError(err) {
		// The transport failed: no connection, a reset, a ping timeout.
		return true
	}
	switch code := connect.CodeOf(err); code {
	case connect.CodeUnavailable, connect.CodeResourceExhausted, connect.CodeAborted,
		connect.CodeDeadlineExceeded, connect.CodeCanceled:
		return true
	case connect.CodeFailedPrecondition:
		var ce *connect.Error
		return errors.As(err, &ce) && errors.Is(kindOf(code, reasonOf(ce), ce.Message()), ErrSealed)
	default:
		return false
	}
}
