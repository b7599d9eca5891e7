package postgres

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Each database failure maps to the code a client acts on, and the message
// names the cause: only what is neither the database's state nor a
// conflict stays an internal error.
func TestDBError(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tests := []struct {
		name     string
		err      error
		code     fault.Code
		msg      string // part of the caller-facing message
		auditMsg string // part of the message when an audit write failed so
	}{
		{"connection lost", io.ErrUnexpectedEOF, fault.Unavailable, "database unavailable", "database unavailable (unreachable)"},
		{"shutting down", &pgconn.PgError{Code: "57P01"}, fault.Unavailable, "database unavailable", "database unavailable (unreachable)"},
		{"too many connections", &pgconn.PgError{Code: "53300"}, fault.Unavailable, "database unavailable", "database unavailable (unreachable)"},
		{"disk full", &pgconn.PgError{Code: "53100"}, fault.Unavailable, "database unavailable (out of disk space)", "database unavailable (out of disk space)"},
		{"out of memory", &pgconn.PgError{Code: "53200"}, fault.Unavailable, "database unavailable (out of memory)", "database unavailable (out of memory)"},
		{"read-only", &pgconn.PgError{Code: "25006"}, fault.Unavailable, "database unavailable (read-only", "database unavailable (read-only"},
		{"serialization", &pgconn.PgError{Code: "40001"}, fault.Aborted, "too busy", "audit log unavailable"},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, fault.Aborted, "too busy", "audit log unavailable"},
		{"permission denied", &pgconn.PgError{Code: "42501"}, fault.Code(0), "", "audit log unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := dbError(ctx, "op", tt.err)
			var fe *fault.Error
			switch {
			case tt.code == 0 && errors.As(err, &fe):
				t.Errorf("dbError = %v (code %v), want an internal error", err, fe.Code)
			case tt.code != 0 && (!errors.As(err, &fe) || fe.Code != tt.code || !strings.Contains(fe.Msg, tt.msg)):
				t.Errorf("dbError = %v, want code %v mentioning %q", err, tt.code, tt.msg)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("dbError lost its cause: %v", err)
			}
			aerr := errAudit(tt.err)
			if fault.CodeOf(aerr) != fault.Unavailable || !strings.Contains(aerr.Error(), tt.auditMsg) {
				t.Errorf("errAudit = %v, want Unavailable mentioning %q", aerr, tt.auditMsg)
			}
		})
	}
}

// A context that ended is the caller's doing, whatever the driver says.
func TestDBErrorKeepsContextErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := dbError(ctx, "op", io.ErrUnexpectedEOF)
	if !errors.Is(err, context.Canceled) || fault.CodeOf(err) == fault.Unavailable {
		t.Fatalf("dbError = %v, want the cancellation", err)
	}
}
