package rpcclient

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/shared/mtls"
)

// Interceptor returns the client interceptor that gives a call whose
// request may have reached the server without an answer coming back (a
// *MaybeSentError) its Connect code: Unknown ("may or may not have been
// applied") for a procedure that may change state, Unavailable for one with
// no side effects, which has nothing to apply and can simply be called
// again. A server this client refused in the TLS handshake (a
// *mtls.ServerRefusedError: a wrong URL, bundle or expected ID) is
// Unauthenticated, not Unavailable: retrying cannot help. Other errors pass
// unchanged. Without it such calls are Unknown whatever the procedure.
//
// The procedures named in notReplayable are sent without an idempotency
// key, so a request of theirs that may have reached the server is never
// sent again: for procedures whose server does not keep outcomes under
// keys (an init or a rekey that shows new credentials once, a login), a
// second attempt would be answered as if the first had not happened.
func Interceptor(notReplayable ...string) connect.Interceptor {
	once := make(map[string]bool, len(notReplayable))
	for _, p := range notReplayable {
		once[p] = true
	}
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if once[req.Spec().Procedure] {
				req.Header().Set(noReplayHeader, "1")
			}
			resp, err := next(ctx, req)
			if refused := (*mtls.ServerRefusedError)(nil); err != nil && errors.As(err, &refused) && !connect.IsWireError(err) {
				// Not an outage, nothing to retry: the client refused the
				// server it reached.
				return resp, connect.NewError(connect.CodeUnauthenticated, refused)
			}
			var maybeSent *MaybeSentError
			if err != nil && !errors.As(err, &maybeSent) && streamBroke(ctx, err) &&
				req.Spec().IdempotencyLevel != connect.IdempotencyNoSideEffects {
				// The answer had begun (the request had arrived) when the
				// stream was reset: whether it was applied is unknown.
				return resp, connect.NewError(connect.CodeUnknown,
					fmt.Errorf("the stream broke while the answer was read: the request may or may not have been applied: %w", err))
			}
			if err == nil || maybeSent == nil {
				return resp, err
			}
			if req.Spec().IdempotencyLevel == connect.IdempotencyNoSideEffects {
				return resp, connect.NewError(connect.CodeUnavailable,
					fmt.Errorf("no answer from the server: %w", maybeSent.Last))
			}
			return resp, connect.NewError(connect.CodeUnknown, maybeSent)
		}
	})
}

// streamBroke reports whether err is a cancellation or deadline that the
// caller did not ask for (its ctx is live) and that no server sent: a
// stream reset by the peer or the transport, which Connect reports as
// Canceled.
func streamBroke(ctx context.Context, err error) bool {
	if ctx.Err() != nil || connect.IsWireError(err) {
		return false
	}
	code := connect.CodeOf(err)
	return code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded
}
