package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/password"
	"github.com/spike-dev/spike/shared/password/strength"
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

// reasonCodes is the one table from a refusal's reason to its Connect code.
// Callers read the reason from the error's ErrorDetail; the code says what
// kind of failure it is (FailedPrecondition: Keeper's state; DataLoss: the
// stored data; InvalidArgument: the request).
var reasonCodes = map[keeperv1.ErrorDetail_Reason]connect.Code{
	keeperv1.ErrorDetail_REASON_SEALED:           connect.CodeFailedPrecondition,
	keeperv1.ErrorDetail_REASON_WRONG_PASSWORD:   connect.CodePermissionDenied,
	keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING:  connect.CodeDataLoss,
	keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY: connect.CodeDataLoss,
	keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH: connect.CodeFailedPrecondition,
	keeperv1.ErrorDetail_REASON_INVALID_REQUEST:  connect.CodeInvalidArgument,
	keeperv1.ErrorDetail_REASON_WRONG_SHARES:     connect.CodePermissionDenied,
	keeperv1.ErrorDetail_REASON_STALE_KEYRING:    connect.CodeFailedPrecondition,
}

// keeperError returns the error for a refusal: the code of reason, msg for
// operators, and an ErrorDetail carrying reason. msg never holds key
// material.
func keeperError(reason keeperv1.ErrorDetail_Reason, msg string) error {
	code, ok := reasonCodes[reason]
	if !ok {
		code = connect.CodeInternal
	}
	ce := connect.NewError(code, errors.New(msg))
	if d, err := connect.NewErrorDetail(&keeperv1.ErrorDetail{Reason: reason}); err == nil {
		ce.AddDetail(d)
	}
	return ce
}

// checkPassword enforces the length limits on a password in use (Unseal).
// It accepts the older, shorter minimum so that existing keyrings unseal.
func checkPassword(pw []byte) error {
	if err := password.CheckLength(pw); err != nil {
		return invalid("password " + err.Error())
	}
	return nil
}

// checkNewPassword enforces the rules on a password being set (Init,
// rekey): long enough and hard to guess, with SPIKE's trust domain among
// the words an attacker tries first.
func (s *Server) checkNewPassword(pw []byte) error {
	if err := strength.Check(pw, s.nexusID.TrustDomain().Name()); err != nil {
		return invalid("password " + err.Error())
	}
	return nil
}

// invalid refuses a malformed request with msg, which names the field.
func invalid(msg string) error {
	return keeperError(keeperv1.ErrorDetail_REASON_INVALID_REQUEST, msg)
}

// sealedErr is returned by data key operations while no keyring is held.
func sealedErr() error {
	return keeperError(keeperv1.ErrorDetail_REASON_SEALED, "keeper is sealed")
}

// heldOther is returned by Unseal when another keyring is already held.
func heldOther() error {
	return keeperError(keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, "keeper is unsealed with a different keyring")
}

// staleErr refuses a request that needs a newer epoch of the keyring than
// the one held; msg says what was missing.
func staleErr(msg string) error {
	return keeperError(keeperv1.ErrorDetail_REASON_STALE_KEYRING, msg+": this Keeper is fetching the newer keyring from its peers; ask another")
}

// corruptKeyring refuses a sealed keyring that is malformed: msg says which
// part, starting with "keyring".
func corruptKeyring(msg string) error {
	return keeperError(keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING, msg)
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
