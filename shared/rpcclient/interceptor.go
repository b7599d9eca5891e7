package rpcclient

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
)

// Interceptor returns the client interceptor that gives a call whose
// request may have reached the server without an answer coming back (a
// *MaybeSentError) its Connect code: Unknown ("may or may not have been
// applied") for a procedure that may change state, Unavailable for one with
// no side effects, which has nothing to apply and can simply be called
// again. Other errors pass unchanged. Without it such calls are Unknown
// whatever the procedure.
func Interceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			var maybeSent *MaybeSentError
			if err == nil || !errors.As(err, &maybeSent) {
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
