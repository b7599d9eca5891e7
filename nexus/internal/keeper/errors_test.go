package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// refusingKeeper answers Status as unsealed with keyring "k" and refuses
// everything else with err.
type refusingKeeper struct {
	keeperv1connect.KeeperServiceClient
	err error
}

func (k refusingKeeper) Status(context.Context, *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	return connect.NewResponse(&keeperv1.StatusResponse{Unsealed: true, KeyringId: []byte("k")}), nil
}

func (k refusingKeeper) DecryptDataKey(context.Context, *connect.Request[keeperv1.DecryptDataKeyRequest]) (*connect.Response[keeperv1.DecryptDataKeyResponse], error) {
	return nil, k.err
}

func (k refusingKeeper) Unseal(context.Context, *connect.Request[keeperv1.UnsealRequest]) (*connect.Response[keeperv1.UnsealResponse], error) {
	return nil, k.err
}

// one is a single Keeper's endpoint.
func one(rpc keeperv1connect.KeeperServiceClient) []Endpoint {
	return []Endpoint{{Name: "keeper", RPC: rpc}}
}

type storedKeyring struct{}

func (storedKeyring) Keyring(context.Context) (Keyring, error) { return Keyring{ID: []byte("k")}, nil }

// refusal builds the error Keeper sends: a code, a message and a reason.
func refusalErr(code connect.Code, reason keeperv1.ErrorDetail_Reason, msg string) error {
	err := connect.NewError(code, errors.New(msg))
	d, derr := connect.NewErrorDetail(&keeperv1.ErrorDetail{Reason: reason})
	if derr != nil {
		panic(derr)
	}
	err.AddDetail(d)
	return err
}

// The translation depends on the reason Keeper gives, never on its
// message: the same message under different reasons means different
// things, and a reworded message changes nothing.
func TestTranslate(t *testing.T) {
	t.Parallel()
	const anyMsg = "keyring: whatever Keeper says"
	tests := []struct {
		name       string
		err        error
		want       fault.Code
		wantSealed bool
		wrongPW    bool
	}{
		{name: "wrong password", err: refusalErr(connect.CodePermissionDenied, keeperv1.ErrorDetail_REASON_WRONG_PASSWORD, anyMsg), want: fault.Invalid, wrongPW: true},
		{name: "wrong shares", err: refusalErr(connect.CodePermissionDenied, keeperv1.ErrorDetail_REASON_WRONG_SHARES, anyMsg), want: fault.Invalid},
		{name: "corrupt keyring", err: refusalErr(connect.CodeDataLoss, keeperv1.ErrorDetail_REASON_CORRUPT_KEYRING, anyMsg), want: fault.DataLoss},
		{name: "corrupt data key", err: refusalErr(connect.CodeDataLoss, keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY, anyMsg), want: fault.DataLoss},
		{name: "keyring mismatch", err: refusalErr(connect.CodeFailedPrecondition, keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH, anyMsg), want: fault.FailedPrecondition, wantSealed: true},
		{name: "invalid request", err: refusalErr(connect.CodeInvalidArgument, keeperv1.ErrorDetail_REASON_INVALID_REQUEST, anyMsg), want: fault.Invalid},
		{name: "sealed", err: refusalErr(connect.CodeFailedPrecondition, keeperv1.ErrorDetail_REASON_SEALED, anyMsg), want: fault.FailedPrecondition, wantSealed: true},
		{name: "no reason, invalid", err: connect.NewError(connect.CodeInvalidArgument, errors.New(anyMsg)), want: fault.Invalid},
		{name: "no reason, sealed", err: connect.NewError(connect.CodeFailedPrecondition, errors.New(anyMsg)), want: fault.FailedPrecondition, wantSealed: true},
		{name: "no reason, data loss", err: connect.NewError(connect.CodeDataLoss, errors.New(anyMsg)), want: fault.DataLoss},
		{name: "caller refused", err: connect.NewError(connect.CodePermissionDenied, errors.New("only Nexus may call Keeper")), want: fault.Unavailable, wantSealed: true},
		{name: "internal", err: connect.NewError(connect.CodeInternal, errors.New(anyMsg)), want: fault.Unavailable, wantSealed: true},
		{name: "unreachable", err: connect.NewError(connect.CodeUnavailable, errors.New("connection refused")), want: fault.Unavailable, wantSealed: true},
		{name: "not a connect error", err: fmt.Errorf("dial: %w", io.ErrUnexpectedEOF), want: fault.Unavailable, wantSealed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := New(one(refusingKeeper{err: tt.err}), storedKeyring{}, slog.New(slog.DiscardHandler))
			if st := c.Check(t.Context()); !st.Unsealed {
				t.Fatalf("state before the refusal: %+v, want unsealed", st)
			}
			_, err := c.DecryptDataKey(t.Context(), []byte("id"), []byte("w"), 1)
			if got := fault.CodeOf(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
			if sealed := !c.State().Unsealed; sealed != tt.wantSealed {
				t.Errorf("sealed after the refusal = %v, want %v", sealed, tt.wantSealed)
			}
			uerr := c.Unseal(t.Context(), Credentials{Password: []byte("password")}, Keyring{ID: []byte("k")})
			if errors.Is(uerr, ErrWrongPassword) != tt.wrongPW {
				t.Errorf("Unseal error %v: is ErrWrongPassword = %v, want %v", uerr, !tt.wrongPW, tt.wrongPW)
			}
		})
	}
}

// A caller that gives up is not told that Keeper is down.
func TestTranslateCanceled(t *testing.T) {
	t.Parallel()
	c := New(one(refusingKeeper{err: connect.NewError(connect.CodeCanceled, context.Canceled)}), storedKeyring{}, slog.New(slog.DiscardHandler))
	c.Check(t.Context())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.DecryptDataKey(ctx, []byte("id"), []byte("w"), 1)
	if fault.CodeOf(err) == fault.Unavailable || !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want the cancellation", err)
	}
}
