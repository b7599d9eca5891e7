package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/mtls"
)

// The kinds of failure a caller can act on. Every error the client returns
// for a call that failed is an *Error, and errors.Is matches it against at
// most one of these sentinels: the one of its kind. It matches none when
// the caller's own context ended (errors.Is finds context.Canceled or
// context.DeadlineExceeded instead) and when the code has no sentinel
// (Canceled, DeadlineExceeded or AlreadyExists from Nexus): Code tells.
var (
	// ErrNotFound: there is no secret at the path, or the version asked
	// for (the latest by default) was deleted or destroyed.
	ErrNotFound = errors.New("not found")
	// ErrPermissionDenied: no policy grants the caller's SPIFFE ID this
	// permission on the path.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: Nexus did not accept the caller's credentials,
	// or the client refused the server it reached (a wrong URL, trust
	// bundle or Nexus ID). Retrying does not help.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrSealed: SPIKE is sealed or not initialised; nothing can be read
	// or written until an admin unseals it.
	ErrSealed = errors.New("sealed")
	// ErrConflict: a check-and-set failed (the secret is not at the
	// version given, or requires check-and-set and none was given).
	// Nothing was written.
	ErrConflict = errors.New("check-and-set conflict")
	// ErrFailedPrecondition: another state prevented the request; the
	// message says which.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrInvalidArgument: the request is malformed; the message names the
	// field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable: nothing happened (Nexus, its database or a Keeper
	// could not be reached), and the client's retries did not help.
	// Retrying later is safe.
	ErrUnavailable = errors.New("unavailable")
	// ErrAborted: the call lost a race with concurrent writers (a patch
	// whose secret changed while it was applied, a lock or statement timeout,
	// a deadlock or a serialization failure in Nexus's database). Nothing
	// was applied; the call may be repeated as it is.
	ErrAborted = errors.New("aborted")
	// ErrOutcomeUnknown: a write may or may not have been applied (the
	// connection broke after it was sent and no retry got an answer).
	// Look before writing again.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrDataLoss: the stored secret failed authentication (changed or
	// corrupted in the database) and was not returned.
	ErrDataLoss = errors.New("data loss")
	// ErrCursorExpired: a watch cursor is older than the changes Nexus
	// retains. Read the current state and watch from now.
	ErrCursorExpired = errors.New("watch cursor expired")
	// ErrResourceExhausted: a limit was reached (too many streams or
	// attempts); wait before trying again.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrUnimplemented: this Nexus does not serve the call (an older
	// version).
	ErrUnimplemented = errors.New("unimplemented")
	// ErrInternal: Nexus failed in a way it does not explain to callers;
	// the message carries a request ID for its operators.
	ErrInternal = errors.New("internal error")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client closed")
)

// Error is a failed call: what was asked (Op, Path), the Connect code and
// the message. Remote says that Nexus itself answered with the error; a
// local error (no connection, a TLS refusal, an unknown outcome) has
// Remote false. Unwrap returns the underlying error, so errors.Is also
// finds context.Canceled and context.DeadlineExceeded when the caller's
// context ended.
type Error struct {
	// Op is the client method, e.g. "put".
	Op string
	// Path is the secret path or prefix the call was about.
	Path string
	// Code is the Connect code.
	Code connect.Code
	// Message is Nexus's message (safe to show: Nexus never puts secret
	// material in one) or the local failure.
	Message string
	// Remote is true when Nexus answered with this error.
	Remote bool
	// Reason is the reason Nexus attached to the error, the name of a
	// spike.nexus.v1.ErrorDetail.Reason without its prefix ("CAS_MISMATCH",
	// "CAS_REQUIRED", "SEALED", "NOT_INITIALISED"), or empty when it gave
	// none.
	Reason string

	kind error
	err  error
}

func (e *Error) Error() string {
	where := e.Op
	if e.Path != "" {
		where += " " + e.Path
	}
	return fmt.Sprintf("spike: %s: %s: %s", where, e.Code, e.Message)
}

// Unwrap returns the underlying (Connect) error.
func (e *Error) Unwrap() error { return e.err }

// Is matches the sentinel of e's kind.
func (e *Error) Is(target error) bool { return e.kind != nil && target == e.kind }

// kinds maps the Connect codes that have one meaning to their sentinel.
// FailedPrecondition is sorted by kindOf.
var kinds = map[connect.Code]error{
	connect.CodeNotFound:          ErrNotFound,
	connect.CodePermissionDenied:  ErrPermissionDenied,
	connect.CodeUnauthenticated:   ErrUnauthenticated,
	connect.CodeInvalidArgument:   ErrInvalidArgument,
	connect.CodeUnavailable:       ErrUnavailable,
	connect.CodeAborted:           ErrAborted,
	connect.CodeUnknown:           ErrOutcomeUnknown,
	connect.CodeDataLoss:          ErrDataLoss,
	connect.CodeOutOfRange:        ErrCursorExpired,
	connect.CodeResourceExhausted: ErrResourceExhausted,
	connect.CodeUnimplemented:     ErrUnimplemented,
	connect.CodeInternal:          ErrInternal,
}

// reasonKinds maps the reasons of Nexus's ErrorDetail to their sentinel.
var reasonKinds = map[nexusv1.ErrorDetail_Reason]error{
	nexusv1.ErrorDetail_REASON_CAS_MISMATCH:    ErrConflict,
	nexusv1.ErrorDetail_REASON_CAS_REQUIRED:    ErrConflict,
	nexusv1.ErrorDetail_REASON_SEALED:          ErrSealed,
	nexusv1.ErrorDetail_REASON_NOT_INITIALISED: ErrSealed,
}

// kindOf returns the sentinel for code, the reason of Nexus's ErrorDetail
// (REASON_UNSPECIFIED when it sent none) and Nexus's message. A
// check-and-set conflict and a sealed SPIKE are both FailedPrecondition:
// the reason tells them apart. Only an older Nexus, which sends no
// reason, is told apart by its message text; a reason this client does
// not know yet (a newer Nexus) is its code alone.
func kindOf(code connect.Code, reason nexusv1.ErrorDetail_Reason, msg string) error {
	if code != connect.CodeFailedPrecondition {
		return kinds[code]
	}
	if reason != nexusv1.ErrorDetail_REASON_UNSPECIFIED {
		if k, ok := reasonKinds[reason]; ok {
			return k
		}
		return ErrFailedPrecondition
	}
	switch {
	case strings.Contains(msg, "check-and-set"):
		return ErrConflict
	case strings.Contains(msg, "sealed"), strings.Contains(msg, "not initialised"):
		return ErrSealed
	default:
		return ErrFailedPrecondition
	}
}

// reasonOf returns the reason of the ErrorDetail on Nexus's error ce, or
// REASON_UNSPECIFIED when it has none.
func reasonOf(ce *connect.Error) nexusv1.ErrorDetail_Reason {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if detail, ok := v.(*nexusv1.ErrorDetail); ok {
				return detail.GetReason()
			}
		}
	}
	return nexusv1.ErrorDetail_REASON_UNSPECIFIED
}

// wrapError turns the error of the call op on path into an *Error. A
// client that refused the server in the TLS handshake is Unauthenticated,
// whatever code the transport gave it.
func wrapError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrClosed) {
		return &Error{Op: op, Path: path, Code: connect.CodeCanceled, Message: ErrClosed.Error(), kind: ErrClosed, err: err}
	}
	e := &Error{Op: op, Path: path, Code: connect.CodeOf(err), Message: err.Error(), Remote: connect.IsWireError(err), err: err}
	reason := nexusv1.ErrorDetail_REASON_UNSPECIFIED
	var ce *connect.Error
	if errors.As(err, &ce) {
		e.Message = ce.Message()
		if e.Remote {
			reason = reasonOf(ce)
		}
	}
	if reason != nexusv1.ErrorDetail_REASON_UNSPECIFIED {
		e.Reason = strings.TrimPrefix(reason.String(), "REASON_")
	}
	if refused := (*mtls.ServerRefusedError)(nil); !e.Remote && errors.As(err, &refused) {
		e.Code = connect.CodeUnauthenticated
		e.Message = "the client refused the server (check the Nexus URL, the trust bundle and the Nexus ID): " + refused.Error()
	}
	// The caller's own cancellation or deadline is not a kind of failure
	// of SPIKE: errors.Is finds the context error instead.
	if !e.Remote && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return e
	}
	e.kind = kindOf(e.Code, reason, e.Message)
	return e
}
