package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// codes maps domain error codes to Connect codes: the one place where this
// translation happens.
var codes = map[fault.Code]connect.Code{
	fault.Invalid:            connect.CodeInvalidArgument,
	fault.NotFound:           connect.CodeNotFound,
	fault.FailedPrecondition: connect.CodeFailedPrecondition,
	fault.PermissionDenied:   connect.CodePermissionDenied,
	fault.Unauthenticated:    connect.CodeUnauthenticated,
	fault.TooMany:            connect.CodeResourceExhausted,
	fault.Unavailable:        connect.CodeUnavailable,
	fault.Aborted:            connect.CodeAborted,
	fault.Unknown:            connect.CodeUnknown,
	fault.DataLoss:           connect.CodeDataLoss,
}

// toConnect converts err into a Connect error whose message is safe for the
// caller. Causes are logged, never returned.
func (s *Server) toConnect(err error, requestID string) error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		if fe.Err != nil {
			s.log.Warn("request failed", "request_id", requestID, "error", fe.Msg, "cause", fe.Err.Error())
		}
		return connect.NewError(codes[fe.Code], errors.New(fe.Msg))
	}
	// Only this server's own Connect errors (from interceptors) pass as
	// they are; one wrapped deeper came from a call to Keeper and is not
	// the caller's business.
	if ce, ok := err.(*connect.Error); ok {
		return ce
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("request timed out"))
	}
	s.log.Error("internal error", "request_id", requestID, "error", err.Error())
	return connect.NewError(connect.CodeInternal, errors.New("internal error (request id "+requestID+")"))
}
