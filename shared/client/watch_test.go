package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/client"
)

// watchServer serves WatchSecrets from a log of changes numbered from 1
// (change n writes version n of apps/x), with cursor "c<n>" after change
// n. Each stream runs the next of scripts, which sends from where the
// request's cursor says with send(changes, cursor) (no changes: a
// heartbeat) and ends the stream as the test wants.
type watchServer struct {
	nexusv1connect.UnimplementedSecretServiceHandler
	scripts []func(ctx context.Context, from int64, send func([]int64, int64) error) error

	mu       sync.Mutex
	requests []*nexusv1.WatchSecretsRequest
}

func (w *watchServer) WatchSecrets(ctx context.Context, req *connect.Request[nexusv1.WatchSecretsRequest], stream *connect.ServerStream[nexusv1.WatchSecretsResponse]) error {
	w.mu.Lock()
	i := len(w.requests)
	w.requests = append(w.requests, req.Msg)
	w.mu.Unlock()
	if i >= len(w.scripts) {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("stream %d: no script", i))
	}
	from, err := strconv.ParseInt(strings.TrimPrefix(req.Msg.GetCursor(), "c"), 10, 64)
	if req.Msg.GetCursor() == "" {
		from, err = 0, nil
	}
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return w.scripts[i](ctx, from, func(changes []int64, cursor int64) error {
		resp := &nexusv1.WatchSecretsResponse{Cursor: fmt.Sprintf("c%d", cursor)}
		for _, n := range changes {
			ev := &nexusv1.SecretEvent{Path: "apps/x", Kind: nexusv1.ChangeKind_CHANGE_KIND_WRITTEN, Version: n, Versions: []int64{n}}
			if req.Msg.GetIncludeData() {
				ev.Data = map[string]string{"n": strconv.FormatInt(n, 10)}
			}
			resp.Events = append(resp.Events, ev)
		}
		return stream.Send(resp)
	})
}

func (w *watchServer) cursors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var c []string
	for _, r := range w.requests {
		c = append(c, r.GetCursor())
	}
	return c
}

// Streams that fail in each way a stream can fail for a while are
// resumed from the last cursor Nexus sent, heartbeats included: every
// change arrives once, in order, and the consumer sees each group's cursor
// on its last event.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	h := &watchServer{scripts: []func(context.Context, int64, func([]int64, int64) error) error{
		func(_ context.Context, from int64, send func([]int64, int64) error) error {
			if err := send([]int64{from + 1, from + 2}, from+2); err != nil {
				return err
			}
			if err := send(nil, from+2); err != nil {
				return err
			}
			return connect.NewError(connect.CodeUnavailable, errors.New("nexus is shutting down"))
		},
		func(_ context.Context, from int64, send func([]int64, int64) error) error {
			if err := send([]int64{from + 1}, from+1); err != nil {
				return err
			}
			// Change from+2 is one the caller may not read: a
			// heartbeat carries the cursor past it.
			if err := send(nil, from+2); err != nil {
				return err
			}
			return nil // the idle timeout: the stream ends cleanly
		},
		func(_ context.Context, from int64, send func([]int64, int64) error) error {
			if err := send([]int64{from + 1}, from+1); err != nil {
				return err
			}
			panic(http.ErrAbortHandler) // the connection breaks
		},
		func(context.Context, int64, func([]int64, int64) error) error {
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("SPIKE is sealed: a Keeper restarted"))
		},
		func(ctx context.Context, from int64, send func([]int64, int64) error) error {
			if err := send([]int64{from + 1, from + 2}, from+2); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}}
	c := serve(t, h)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	type seen struct {
		Version int64
		Cursor  string
		Data    string
	}
	var got []seen
	for ev, err := range c.Watch(ctx, "apps/", client.WatchOptions{IncludeData: true}) {
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if ev.Path != "apps/x" || ev.Kind != client.KindWritten || ev.Kind.String() != "written" {
			t.Errorf("event %+v", ev)
		}
		got = append(got, seen{ev.Version, ev.Cursor, ev.Data["n"]})
		if len(got) == 6 {
			break
		}
	}
	want := []seen{{1, "", "1"}, {2, "c2", "2"}, {3, "c3", "3"}, {5, "c5", "5"}, {6, "", "6"}, {7, "c7", "7"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", "c2", "c4", "c5", "c5"}, h.cursors()); diff != "" {
		t.Errorf("cursors the streams started from (-want +got):\n%s", diff)
	}
}

// A watch given a cursor starts from it.
func TestWatchFromCursor(t *testing.T) {
	t.Parallel()
	h := &watchServer{scripts: []func(context.Context, int64, func([]int64, int64) error) error{
		func(ctx context.Context, from int64, send func([]int64, int64) error) error {
			if err := send([]int64{from + 1}, from+1); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}}
	c := serve(t, h)
	for ev, err := range c.Watch(t.Context(), "apps/", client.WatchOptions{Cursor: "c41"}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Version != 42 || ev.Cursor != "c42" || ev.Data != nil {
			t.Errorf("event %+v, want version 42, cursor c42, no data", ev)
		}
		break
	}
	if diff := cmp.Diff([]string{"c41"}, h.cursors()); diff != "" {
		t.Errorf("cursors (-want +got):\n%s", diff)
	}
}

// A refusal that reconnecting cannot fix ends the watch with it, after
// the events that came before, and without another stream.
func TestWatchPermanentErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		code connect.Code
		kind error
	}{
		{connect.CodePermissionDenied, client.ErrPermissionDenied},
		{connect.CodeOutOfRange, client.ErrCursorExpired},
		{connect.CodeUnimplemented, client.ErrUnimplemented},
		{connect.CodeInvalidArgument, client.ErrInvalidArgument},
		{connect.CodeInternal, client.ErrInternal},
	} {
		t.Run(tt.code.String(), func(t *testing.T) {
			t.Parallel()
			h := &watchServer{scripts: []func(context.Context, int64, func([]int64, int64) error) error{
				func(_ context.Context, from int64, send func([]int64, int64) error) error {
					if err := send([]int64{from + 1}, from+1); err != nil {
						return err
					}
					return connect.NewError(tt.code, errors.New("refused"))
				},
			}}
			c := serve(t, h)
			var events, errs int
			for _, err := range c.Watch(t.Context(), "apps/", client.WatchOptions{}) {
				if err == nil {
					events++
					continue
				}
				errs++
				var ce *client.Error
				if !errors.Is(err, tt.kind) || !errors.As(err, &ce) || ce.Op != "watch" || ce.Path != "apps/" || ce.Message != "refused" {
					t.Errorf("watch ended with %v, want %v", err, tt.kind)
				}
			}
			if events != 1 || errs != 1 || len(h.cursors()) != 1 {
				t.Errorf("%d events, %d errors, %d streams; want 1 each", events, errs, len(h.cursors()))
			}
		})
	}
}

// Close and the caller's context end a watch that is waiting for changes,
// each with its own error.
func TestWatchEnds(t *testing.T) {
	t.Parallel()
	waiting := func(ctx context.Context, _ int64, send func([]int64, int64) error) error {
		if err := send(nil, 0); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	for _, tt := range []struct {
		name string
		end  func(*client.Client, context.CancelFunc)
		want error
		code connect.Code
	}{
		{"close", func(c *client.Client, _ context.CancelFunc) { _ = c.Close() }, client.ErrClosed, connect.CodeCanceled},
		{"cancel", func(_ *client.Client, cancel context.CancelFunc) { cancel() }, context.Canceled, connect.CodeCanceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &watchServer{scripts: []func(context.Context, int64, func([]int64, int64) error) error{waiting}}
			c := serve(t, h)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			started := make(chan struct{})
			go func() {
				<-started
				time.Sleep(100 * time.Millisecond) // let the stream wait
				tt.end(c, cancel)
			}()
			close(started)
			var last error
			for _, err := range c.Watch(ctx, "apps/", client.WatchOptions{}) {
				last = err
			}
			var ce *client.Error
			if !errors.Is(last, tt.want) || !errors.As(last, &ce) || ce.Code != tt.code {
				t.Errorf("watch ended with %v, want %v with code %v", last, tt.want, tt.code)
			}
			if errors.Is(last, client.ErrUnavailable) || errors.Is(last, client.ErrOutcomeUnknown) {
				t.Errorf("watch ended with %v: not a failure of Nexus", last)
			}
		})
	}
}

// With Heartbeats, responses without events are yielded too, with their
// cursor; the first says that the stream is up.
func TestWatchHeartbeats(t *testing.T) {
	t.Parallel()
	h := &watchServer{scripts: []func(context.Context, int64, func([]int64, int64) error) error{
		func(ctx context.Context, from int64, send func([]int64, int64) error) error {
			for _, err := range []error{send(nil, from), send([]int64{from + 1}, from+1), send(nil, from+2)} {
				if err != nil {
					return err
				}
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}}
	c := serve(t, h)
	var got []string
	for ev, err := range c.Watch(t.Context(), "apps/", client.WatchOptions{Cursor: "c7", Heartbeats: true}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d %s", ev.Kind, ev.Version, ev.Cursor))
		if len(got) == 3 {
			break
		}
	}
	if diff := cmp.Diff([]string{"heartbeat 0 c7", "written 8 c8", "heartbeat 0 c9"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
