package server

import (
	"errors"
	"testing"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
)

// TestEveryReasonHasACode checks that no reason added to the proto is left
// out of reasonCodes, where it would become Internal.
func TestEveryReasonHasACode(t *testing.T) {
	t.Parallel()
	for n, name := range keeperv1.ErrorDetail_Reason_name {
		reason := keeperv1.ErrorDetail_Reason(n)
		if reason == keeperv1.ErrorDetail_REASON_UNSPECIFIED {
			continue
		}
		code, ok := reasonCodes[reason]
		if !ok || code == connect.CodeInternal {
			t.Errorf("%s has no code in reasonCodes", name)
		}
		var ce *connect.Error
		if !errors.As(keeperError(reason, "msg"), &ce) || len(ce.Details()) != 1 {
			t.Errorf("keeperError(%s) does not carry one ErrorDetail", name)
		}
	}
}
