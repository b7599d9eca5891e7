package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// failing answers every GetSecret and PutSecret with err, or breaks the
// connection when err is nil.
type failing struct {
	nexusv1connect.UnimplementedSecretServiceHandler
	err error
}

func (f failing) GetSecret(context.Context, *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	if f.err == nil {
		panic(http.ErrAbortHandler)
	}
	return nil, f.err
}

func (f failing) PutSecret(context.Context, *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	if f.err == nil {
		panic(http.ErrAbortHandler)
	}
	return nil, f.err
}

// sentinels are all the kinds of failure.
var sentinels = []error{
	client.ErrNotFound, client.ErrPermissionDenied, client.ErrUnauthenticated, client.ErrSealed,
	client.ErrConflict, client.ErrFailedPrecondition, client.ErrInvalidArgument, client.ErrUnavailable,
	client.ErrAborted, client.ErrOutcomeUnknown, client.ErrDataLoss, client.ErrCursorExpired,
	client.ErrResourceExhausted, client.ErrUnimplemented, client.ErrInternal, client.ErrClosed,
}

// Nexus's answers, and the local failures, each match one sentinel, keep
// Nexus's code and message, and say whether Nexus answered.
func TestErrors(t *testing.T) {
	t.Parallel()
	refusal := func(code connect.Code, msg string) error { return connect.NewError(code, errors.New(msg)) }
	// because is a FailedPrecondition with msg and Nexus's ErrorDetail
	// carrying reason.
	because := func(reason nexusv1.ErrorDetail_Reason, msg string) error {
		ce := connect.NewError(connect.CodeFailedPrecondition, errors.New(msg))
		d, err := connect.NewErrorDetail(&nexusv1.ErrorDetail{Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		ce.AddDetail(d)
		return ce
	}
	for _, tt := range []struct {
		name   string
		err    error // nil: the connection breaks
		kind   error
		code   connect.Code
		remote bool
		msg    string
		reason string
	}{
		{"not found", refusal(connect.CodeNotFound, "no secret at a/b"), client.ErrNotFound, connect.CodeNotFound, true, "no secret at a/b", ""},
		{"denied", refusal(connect.CodePermissionDenied, "no"), client.ErrPermissionDenied, connect.CodePermissionDenied, true, "no", ""},
		{"unauthenticated", refusal(connect.CodeUnauthenticated, "token"), client.ErrUnauthenticated, connect.CodeUnauthenticated, true, "token", ""},
		// The reason decides, whatever the message says.
		{"sealed", because(nexusv1.ErrorDetail_REASON_SEALED, "check-and-set cannot run"), client.ErrSealed, connect.CodeFailedPrecondition, true, "", "SEALED"},
		{"not initialised", because(nexusv1.ErrorDetail_REASON_NOT_INITIALISED, "run init"), client.ErrSealed, connect.CodeFailedPrecondition, true, "", "NOT_INITIALISED"},
		{"cas mismatch", because(nexusv1.ErrorDetail_REASON_CAS_MISMATCH, "SPIKE is sealed? no: a/b is at version 2"), client.ErrConflict, connect.CodeFailedPrecondition, true, "", "CAS_MISMATCH"},
		{"cas required", because(nexusv1.ErrorDetail_REASON_CAS_REQUIRED, "give a version"), client.ErrConflict, connect.CodeFailedPrecondition, true, "", "CAS_REQUIRED"},
		// A reason this client does not know (a newer Nexus): the code alone.
		{"unknown reason", because(99, "SPIKE is sealed"), client.ErrFailedPrecondition, connect.CodeFailedPrecondition, true, "", "99"},
		// An older Nexus sends no reason: its message tells.
		{"sealed, older nexus", refusal(connect.CodeFailedPrecondition, "SPIKE is sealed: Keeper restarted; unseal"), client.ErrSealed, connect.CodeFailedPrecondition, true, "", ""},
		{"not initialised, older nexus", refusal(connect.CodeFailedPrecondition, "SPIKE is not initialised: run `spike operator init`"), client.ErrSealed, connect.CodeFailedPrecondition, true, "", ""},
		{"cas, older nexus", refusal(connect.CodeFailedPrecondition, "check-and-set failed: a/b is at version 2, you expected 1"), client.ErrConflict, connect.CodeFailedPrecondition, true, "", ""},
		{"other precondition", refusal(connect.CodeFailedPrecondition, "already initialised"), client.ErrFailedPrecondition, connect.CodeFailedPrecondition, true, "", ""},
		{"invalid", refusal(connect.CodeInvalidArgument, "path: empty segment"), client.ErrInvalidArgument, connect.CodeInvalidArgument, true, "", ""},
		{"data loss", refusal(connect.CodeDataLoss, "failed authentication"), client.ErrDataLoss, connect.CodeDataLoss, true, "", ""},
		{"unknown from nexus", refusal(connect.CodeUnknown, "commit outcome unknown"), client.ErrOutcomeUnknown, connect.CodeUnknown, true, "", ""},
		{"internal", refusal(connect.CodeInternal, "internal error (request id 1)"), client.ErrInternal, connect.CodeInternal, true, "", ""},
		{"too many", refusal(connect.CodeResourceExhausted, "wait"), client.ErrResourceExhausted, connect.CodeResourceExhausted, true, "", ""},
		// A patch that lost its race, a lock timeout: nothing applied.
		{"aborted", refusal(connect.CodeAborted, "apps/x kept changing while this request tried to update it; try again"), client.ErrAborted, connect.CodeAborted, true, "", ""},
		// Retried (twice here), then given up.
		{"unavailable", refusal(connect.CodeUnavailable, "database down"), client.ErrUnavailable, connect.CodeUnavailable, true, "database down", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := serve(t, failing{err: tt.err})
			_, err := c.Get(t.Context(), "a/b")
			var ce *client.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Get: %v (%T), want a *client.Error", err, err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Get: %v is not %v", err, tt.kind)
			}
			if errors.Is(err, context.Canceled) {
				t.Errorf("Get: %v is context.Canceled", err)
			}
			for _, other := range sentinels {
				if !errors.Is(other, tt.kind) && errors.Is(err, other) {
					t.Errorf("Get: %v is also %v", err, other)
				}
			}
			want := tt.msg
			if want == "" {
				var sent *connect.Error
				errors.As(tt.err, &sent)
				want = sent.Message()
			}
			got := client.Error{Op: ce.Op, Path: ce.Path, Code: ce.Code, Message: ce.Message, Remote: ce.Remote, Reason: ce.Reason}
			if diff := cmp.Diff(client.Error{Op: "get", Path: "a/b", Code: tt.code, Message: want, Remote: tt.remote, Reason: tt.reason}, got, cmp.AllowUnexported(client.Error{})); diff != "" {
				t.Errorf("Get error (-want +got):\n%s", diff)
			}
		})
	}
}

// A connection that breaks after the request was sent: a write's outcome
// is unknown, a read is unavailable. Neither came over the wire.
func TestBrokenConnection(t *testing.T) {
	t.Parallel()
	c := serve(t, failing{})
	_, err := c.Put(t.Context(), "a/b", map[string]string{"k": "v"})
	if !errors.Is(err, client.ErrOutcomeUnknown) || errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Put over a broken connection: %v, want ErrOutcomeUnknown", err)
	}
	_, err = c.Get(t.Context(), "a/b")
	if !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Get over a broken connection: %v, want ErrUnavailable", err)
	}
	var ce *client.Error
	if errors.As(err, &ce) && ce.Remote {
		t.Errorf("Get over a broken connection: Remote is true")
	}
}

// The caller's own cancellation is context.Canceled, not a SPIKE failure;
// a closed client says so.
func TestCanceledAndClosed(t *testing.T) {
	t.Parallel()
	c := serve(t, failing{err: connect.NewError(connect.CodeNotFound, errors.New("none"))})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Get(ctx, "a/b")
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Errorf("Get with a canceled context: %v, want context.Canceled only", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), "a/b"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
}

// recording answers PutSecret with Unavailable first, then with version 7,
// and records each attempt's request and idempotency key.
type recording struct {
	nexusv1connect.UnimplementedSecretServiceHandler
	mu   sync.Mutex
	keys []string
	cas  []*int64
}

func (r *recording) PutSecret(_ context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, req.Header().Get(rpcclient.IdempotencyKeyHeader))
	r.cas = append(r.cas, req.Msg.Cas)
	if len(r.keys)%2 == 1 {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("database down"))
	}
	return connect.NewResponse(&nexusv1.PutSecretResponse{Path: req.Msg.GetPath(), Version: 7, CreatedAt: timestamppb.Now()}), nil
}

// A write is retried after Unavailable with the same idempotency key; the
// next logical write has another key; CAS reaches Nexus.
func TestPutRetriesWithOneKey(t *testing.T) {
	t.Parallel()
	h := &recording{}
	c := serve(t, h)
	v, err := c.Put(t.Context(), "a/b", map[string]string{"k": "v"}, client.CAS(3))
	if err != nil || v.Version != 7 || v.Path != "a/b" {
		t.Fatalf("Put: %+v, %v; want version 7 of a/b", v, err)
	}
	if _, err := c.Put(t.Context(), "a/b", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.keys) != 4 || h.keys[0] == "" || h.keys[0] != h.keys[1] || h.keys[2] != h.keys[3] || h.keys[1] == h.keys[2] {
		t.Errorf("idempotency keys %q: want one key per Put, the same on its retry", h.keys)
	}
	if h.cas[0] == nil || *h.cas[0] != 3 || h.cas[2] != nil {
		t.Errorf("cas sent: %v, %v; want 3, then none", h.cas[0], h.cas[2])
	}
}

// blocking answers GetSecret only when the call ends.
type blocking struct {
	nexusv1connect.UnimplementedSecretServiceHandler
}

func (blocking) GetSecret(ctx context.Context, _ *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Close ends a call in progress with ErrClosed; a second Close is harmless.
func TestCloseDuringCall(t *testing.T) {
	t.Parallel()
	c := serve(t, blocking{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(t.Context(), "a/b")
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the call reach the server
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("Get cut short by Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the call")
	}
}
