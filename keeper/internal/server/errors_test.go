package server

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

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

// TestCheckNewPassword checks the rules for a password being set: at
// least 12 bytes and hard to guess, the trust domain counting as easy.
// Unseal keeps the length check alone (TestPasswordLengthBounds).
func TestCheckNewPassword(t *testing.T) {
	t.Parallel()
	s := New(Config{NexusID: spiffeid.RequireFromString("spiffe://prod.acme.example/spike/nexus")})
	const weak = "password is too easy to guess: "
	tests := []struct {
		name    string
		pw      string
		wantMsg string // prefix of the refusal; "" when accepted
	}{
		{"passphrase", "correct horse battery staple", ""},
		{"old minimum", "vq8#Lm2!", "password must be 12 to 1024 bytes long"},
		{"common", "passwordpassword", weak},
		{"trust domain", "prod.acme.example", weak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.checkNewPassword([]byte(tt.pw))
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("checkNewPassword = %v, want nil", err)
				}
				return
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.HasPrefix(ce.Message(), tt.wantMsg) {
				t.Fatalf("checkNewPassword = %v, want InvalidArgument %q…", err, tt.wantMsg)
			}
			if len(ce.Details()) != 1 {
				t.Errorf("checkNewPassword carries %d details, want the reason", len(ce.Details()))
			}
			if strings.Contains(ce.Message(), tt.pw) {
				t.Errorf("message %q contains the password", ce.Message())
			}
		})
	}
}
