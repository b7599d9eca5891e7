// Package fault defines the one error type Nexus's domain returns. Each error
// carries a code saying what kind of failure it is; the server package maps
// codes to Connect codes in one table. Messages are safe to show to callers:
// they never contain secret material.
package fault

import (
	"errors"
	"fmt"
)

// Code classifies a failure.
type Code int

// The codes, one per kind of failure a caller can act on.
const (
	// Invalid means the request itself is wrong (bad path, bad value).
	Invalid Code = iota + 1
	// NotFound means the secret or version does not exist or is deleted.
	NotFound
	// FailedPrecondition means SPIKE is not in a state to serve the request:
	// sealed, not initialised, already initialised.
	FailedPrecondition
	// PermissionDenied means the caller may not do this.
	PermissionDenied
	// Unauthenticated means the request lacks valid credentials: no admin
	// token, or an expired or revoked one.
	Unauthenticated
	// TooMany means the caller must wait before trying again (failed
	// logins).
	TooMany
	// Unavailable means a dependency (database, Keeper) cannot be reached.
	Unavailable
	// Aborted means the request lost a race with concurrent writers and
	// may be retried as it is.
	Aborted
	// Unknown means the outcome is not known: a write may or may not have
	// been applied. Clients must not retry it blindly.
	Unknown
	// DataLoss means stored data failed authentication: it was tampered with
	// or cannot be decrypted.
	DataLoss
	// OutOfRange means a position the caller gave is not (or no longer)
	// served: a watch cursor older than the retained changes, or from
	// another database.
	OutOfRange
)

// Reason refines a code for callers that act on it: the server package
// sends it along with the code, so that no caller has to read the message
// to tell, say, a check-and-set conflict from a sealed SPIKE (both
// FailedPrecondition).
type Reason int

// The reasons. An error without one is what its code says.
const (
	// NoReason: the code says all a caller can act on.
	NoReason Reason = iota
	// CASMismatch: a check-and-set failed; the secret is at another
	// version than the one given (FailedPrecondition).
	CASMismatch
	// CASRequired: the secret requires check-and-set and none was given
	// (FailedPrecondition).
	CASRequired
	// Sealed: no Keeper holds the keyring (FailedPrecondition).
	Sealed
	// NotInitialised: SPIKE has no keyring yet (FailedPrecondition).
	NotInitialised
)

// Error is a domain error with a code and a caller-safe message.
type Error struct {
	Code Code
	// Msg is shown to the caller.
	Msg string
	// Err is the underlying cause, for logs only.
	Err error
	// Reason, when set, refines Code for callers.
	Reason Reason
}

// Because returns a copy of e with reason r.
func (e *Error) Because(r Reason) *Error {
	c := *e
	c.Reason = r
	return &c
}

// Error returns the caller-safe message.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with a formatted message and an underlying cause
// that is logged but not shown to callers.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// CodeOf returns the code of the first Error in err's chain, or 0.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
