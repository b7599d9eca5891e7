package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/shared/mtls"
)

// authorize admits only Nexus. The TLS configuration already refuses every
// other peer; this check keeps that true if the listener is ever wired up
// differently.
func (s *Server) authorize(ctx context.Context) error {
	id, ok := mtls.Caller(ctx)
	if !ok || id != s.nexusID {
		return connect.NewError(connect.CodePermissionDenied, errors.New("caller is not nexus"))
	}
	return nil
}

// internal logs err once and returns a generic Internal error, so that no
// detail of a failure reaches the caller.
func (s *Server) internal(ctx context.Context, op string, err error) error {
	s.log.ErrorContext(ctx, "internal error", slog.String("op", op), slog.String("error", err.Error()))
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// checkPassword enforces the password length limits.
func checkPassword(password []byte) error {
	if len(password) < minPassword || len(password) > maxPassword {
		return invalid(fmt.Sprintf("password must be %d to %d bytes", minPassword, maxPassword))
	}
	return nil
}

// invalid returns an InvalidArgument error with msg, which names the field.
func invalid(msg string) error {
	return connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
}

// sealedErr is returned by data key operations while no keyring is held.
func sealedErr() error {
	return connect.NewError(connect.CodeFailedPrecondition, errors.New("keeper is sealed"))
}

// heldOther is returned by Unseal when another keyring is already held.
func heldOther() error {
	return connect.NewError(connect.CodeFailedPrecondition, errors.New("keeper is unsealed with a different keyring"))
}

// contextErr maps a context error to its Connect code.
func contextErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// bytesEqual compares keyring IDs in constant time.
func bytesEqual(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}
