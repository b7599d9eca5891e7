package cli

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	sealed := "SPIKE is sealed: unseal with: echo '<password>' | spike operator unseal"
	url := (&fakeNexus{err: connect.NewError(connect.CodeFailedPrecondition, errors.New(sealed))}).serve(t)
	_, wireErr := plainNexus(url).operator.Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{}))
	if wireErr == nil {
		t.Fatal("Status against a failing handler succeeded")
	}

	closed := httptest.NewServer(nil)
	closed.Close()
	_, dialErr := plainNexus(closed.URL).operator.Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{}))
	if dialErr == nil {
		t.Fatal("Status against a closed server succeeded")
	}

	tests := []struct {
		name    string
		err     error
		want    int
		wantMsg string
	}{
		{name: "success", err: nil, want: 0},
		{name: "server refused", err: wireErr, want: 2, wantMsg: sealed},
		{name: "server refused, wrapped", err: fmt.Errorf("get status: %w", wireErr), want: 2, wantMsg: sealed},
		{name: "local error", err: errors.New("cannot read stdin"), want: 1, wantMsg: "cannot read stdin"},
		{
			name:    "usage error",
			err:     &usageError{command: "spike secret put", err: errors.New("pair 1 has an empty key")},
			want:    1,
			wantMsg: "pair 1 has an empty key\nRun 'spike secret put --help' for usage.",
		},
		{name: "audit trail failed verification", err: errTrailFailed, want: 2, wantMsg: "audit trail failed verification"},
		{name: "seal not confirmed", err: fmt.Errorf("%w: 1 may still hold the root key", errSealUnconfirmed), want: 2, wantMsg: "not every Keeper confirmed the seal: 1 may still hold the root key"},
		{name: "connection refused", err: dialErr, want: 1},
		{name: "connection refused, explained", err: transportError(dialErr, closed.URL, time.Second), want: 1},
		{
			name:    "connect error made locally",
			err:     connect.NewError(connect.CodeFailedPrecondition, errors.New("local")),
			want:    1,
			wantMsg: "failed_precondition: local",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
			if tt.wantMsg != "" {
				if got := errorMessage(tt.err); got != tt.wantMsg {
					t.Errorf("errorMessage(%v) = %q, want %q", tt.err, got, tt.wantMsg)
				}
			}
		})
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(nil)
	closed.Close()
	_, dialErr := plainNexus(closed.URL).operator.Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{}))

	url := (&fakeNexus{err: connect.NewError(connect.CodeNotFound, errors.New("no secret"))}).serve(t)
	_, wireErr := plainNexus(url).secrets.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "a"}))

	local := errors.New("write output: broken pipe")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: "<nil>"},
		{name: "wire error unchanged", err: wireErr, want: wireErr.Error()},
		{name: "local error unchanged", err: local, want: local.Error()},
		{
			name: "refused connection",
			err:  dialErr,
			want: fmt.Sprintf("cannot reach Nexus at https://nexus: %v\n%s", dialErr, connectionHint),
		},
		{
			name: "deadline",
			err:  connect.NewError(connect.CodeDeadlineExceeded, errors.New("context deadline exceeded")),
			want: "no answer from Nexus at https://nexus within 1s: deadline_exceeded: context deadline exceeded\n" + connectionHint,
		},
		{
			name: "interrupted",
			err:  connect.NewError(connect.CodeCanceled, errors.New("context canceled")),
			want: "interrupted: canceled: context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := fmt.Sprint(transportError(tt.err, "https://nexus", time.Second))
			if got != tt.want {
				t.Errorf("transportError() = %q, want %q", got, tt.want)
			}
		})
	}
}
