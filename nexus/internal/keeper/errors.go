package keeper

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// ErrWrongPassword is in the chain of the error Unseal returns when Keeper
// refused the password.
var ErrWrongPassword = errors.New("wrong password")

// ErrWrongShares is in the chain of the error Unseal returns when Keeper
// refused the shares: they recover no unseal key of the keyring.
var ErrWrongShares = errors.New("wrong shares")

// refusal is what one kind of Keeper refusal means for Nexus.
type refusal struct {
	code fault.Code
	// msg is the caller-facing message; %[1]s is the operation, %[2]s
	// Keeper's own message (written for operators, never key material).
	msg string
	// cause, when set, is the sentinel callers test for with errors.Is.
	cause error
}

// refusals translates Keeper's refusals, told apart by the reason in the
// error's details (never by message text), into domain errors. A reason
// missing here means that Keeper could not answer: Unavailable. A sealed
// Keeper is handled before this table: it updates the state.
var refusals = map[keeperv1.ErrorDetail_Reason]refusal{
	keeperv1.ErrorDetail_REASON_WRONG_PASSWORD:   {code: fault.Invalid, msg: "%[1]s: wrong password", cause: ErrWrongPassword},
	keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING:  {code: fault.DataLoss, msg: "%[1]s: the stored keyring is corrupt (%[2]s)"},
	keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY: {code: fault.DataLoss, msg: "%[1]s: the wrapped data key was altered or is corrupt"},
	keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH: {code: fault.FailedPrecondition, msg: "%[1]s: %[2]s"},
	keeperv1.ErrorDetail_REASON_INVALID_REQUEST:  {code: fault.Invalid, msg: "%[1]s: %[2]s"},
	keeperv1.ErrorDetail_REASON_WRONG_SHARES:     {code: fault.Invalid, msg: "%[1]s: wrong shares", cause: ErrWrongShares},
	// Every Keeper asked holds an older epoch than needed: they are
	// fetching the newer one from each other; nothing happened.
	keeperv1.ErrorDetail_REASON_STALE_KEYRING: {code: fault.Unavailable, msg: "%[1]s: %[2]s"},
}

// reasonsByCode gives the reason of a refusal that carries none (a Keeper
// older than the reasons): the Connect codes that meant one thing only.
// Any other code without a reason is Unavailable.
var reasonsByCode = map[connect.Code]keeperv1.ErrorDetail_Reason{
	connect.CodeFailedPrecondition: keeperv1.ErrorDetail_REASON_SEALED,
	connect.CodeDataLoss:           keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY,
	connect.CodeInvalidArgument:    keeperv1.ErrorDetail_REASON_INVALID_REQUEST,
}

// translate turns a failed call to Keeper into a domain error: the one
// place where Keeper's answers are interpreted.
func (c *Client) translate(op string, err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		// The caller gave up (or ran out of time): not Keeper's doing. The
		// code stays visible to connect.CodeOf.
		return fmt.Errorf("%s: %w", op, err)
	}
	reason := reasonFor(err)
	if reason == keeperv1.ErrorDetail_REASON_SEALED {
		if serr := c.State().Err(); serr != nil {
			return serr
		}
	}
	r, ok := refusals[reason]
	if !ok {
		return fault.Wrap(fault.Unavailable, err, "%s: Keeper is unavailable", op)
	}
	cause := err
	if r.cause != nil {
		cause = fmt.Errorf("%w: %w", r.cause, err)
	}
	return fault.Wrap(r.code, cause, r.msg, op, message(err))
}

// reasonFor returns the reason of a refusal: the one Keeper gave, or the
// one its code alone meant.
func reasonFor(err error) keeperv1.ErrorDetail_Reason {
	if r := reasonOf(err); r != keeperv1.ErrorDetail_REASON_UNSPECIFIED {
		return r
	}
	return reasonsByCode[connect.CodeOf(err)]
}

// reasonOf returns the reason Keeper gave for refusing a call, from the
// error's details; REASON_UNSPECIFIED when it gave none.
func reasonOf(err error) keeperv1.ErrorDetail_Reason {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return keeperv1.ErrorDetail_REASON_UNSPECIFIED
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if detail, ok := v.(*keeperv1.ErrorDetail); derr == nil && ok {
			return detail.GetReason()
		}
	}
	return keeperv1.ErrorDetail_REASON_UNSPECIFIED
}

// message is Keeper's own message, without the code Connect prefixes.
func message(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
