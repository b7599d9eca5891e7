package server

import (
	"context"
	"encoding/hex"
	"math"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/access"
	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// Password length bounds. The upper bound keeps Argon2id's input sane.
const (
	minPasswordLen = 8
	maxPasswordLen = 1024
)

// operator implements nexusv1connect.OperatorServiceHandler.
type operator struct{ *Server }

// Init creates the root keyring through Keeper, stores it sealed, and
// unseals Keeper with it. The keyring table holds at most one row, so of
// concurrent inits exactly one succeeds.
func (o operator) Init(ctx context.Context, req *connect.Request[nexusv1.InitRequest]) (*connect.Response[nexusv1.InitResponse], error) {
	pw := req.Msg.GetPassword()
	defer clear(pw)
	if err := checkPassword(pw); err != nil {
		return nil, err
	}
	initialised, err := o.store.Initialized(ctx)
	if err != nil {
		return nil, err
	}
	if initialised {
		return nil, errAlreadyInitialised
	}
	resp, err := o.keeper.Init(ctx, connect.NewRequest(&keeperv1.InitRequest{Password: pw}))
	if err != nil {
		return nil, keeperFault("create keyring", err)
	}
	kr := resp.Msg.GetKeyring()
	err = o.store.CreateKeyring(ctx, postgres.Keyring{
		ID:         kr.GetKeyringId(),
		KDFParams:  kr.GetKdfParams(),
		Ciphertext: kr.GetCiphertext(),
	})
	if err != nil {
		return nil, err
	}
	o.log.Info("initialised", "keyring_id", hex.EncodeToString(kr.GetKeyringId()))
	if err := o.unsealKeeper(ctx, pw, kr); err != nil {
		// The keyring is stored: a retry of Init would only say "already
		// initialised". Say what happened and what to do.
		return nil, fault.Wrap(fault.FailedPrecondition, err,
			"SPIKE is initialised, but Keeper could not be unsealed (%s): run `spike operator unseal`", err.Error())
	}
	token, err := o.issue(ctx, 0)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.InitResponse{KeyringId: hex.EncodeToString(kr.GetKeyringId()), Token: token}), nil
}

// Unseal sends the stored keyring and the password to Keeper.
func (o operator) Unseal(ctx context.Context, req *connect.Request[nexusv1.UnsealRequest]) (*connect.Response[nexusv1.UnsealResponse], error) {
	pw := req.Msg.GetPassword()
	defer clear(pw)
	id, err := o.checkPasswordWithKeeper(ctx, pw)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.UnsealResponse{KeyringId: hex.EncodeToString(id)}), nil
}

// Login checks the admin password (Keeper opens the stored keyring with
// it, unsealing SPIKE if it was sealed) and issues an admin token bound to
// the caller's SPIFFE ID.
func (o operator) Login(ctx context.Context, req *connect.Request[nexusv1.LoginRequest]) (*connect.Response[nexusv1.LoginResponse], error) {
	pw := req.Msg.GetPassword()
	defer clear(pw)
	if req.Msg.GetTtlSeconds() < 0 {
		return nil, fault.New(fault.Invalid, "ttl_seconds: must not be negative")
	}
	if _, err := o.checkPasswordWithKeeper(ctx, pw); err != nil {
		return nil, err
	}
	token, err := o.issue(ctx, time.Duration(min(req.Msg.GetTtlSeconds(), math.MaxInt64/int64(time.Second)))*time.Second)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.LoginResponse{Token: token}), nil
}

// Logout revokes the token the request carries.
func (o operator) Logout(ctx context.Context, _ *connect.Request[nexusv1.LogoutRequest]) (*connect.Response[nexusv1.LogoutResponse], error) {
	token := principalFrom(ctx).token
	if e := audit.FromContext(ctx); e != nil {
		e.SetTarget(access.TokenID(token))
	}
	if err := o.tokens.Revoke(ctx, token); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.LogoutResponse{}), nil
}

// issue makes an admin token for the caller.
func (o operator) issue(ctx context.Context, ttl time.Duration) (*nexusv1.AdminToken, error) {
	token, expires, err := o.tokens.Issue(ctx, principalFrom(ctx).id, ttl)
	if err != nil {
		return nil, err
	}
	if e := audit.FromContext(ctx); e != nil {
		e.SetTarget(access.TokenID(token))
	}
	return &nexusv1.AdminToken{Token: token, ExpiresAt: timestamppb.New(expires)}, nil
}

// checkPasswordWithKeeper has Keeper open the stored keyring with pw. Wrong
// passwords slow the caller down: each failure doubles the wait before its
// next attempt is even considered, and a caller has one attempt in flight
// at a time, so parallel guesses cannot all run before the first failure
// counts. An attempt that ends without Keeper's verdict (Keeper or the
// database unavailable, request cancelled) counts as a failure too: the
// backoff fails closed.
func (o operator) checkPasswordWithKeeper(ctx context.Context, pw []byte) ([]byte, error) {
	if err := checkPassword(pw); err != nil {
		return nil, err
	}
	caller := principalFrom(ctx).id.String()
	stored, err := o.store.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	done, wait := o.backoff.Begin(caller)
	if wait > 0 {
		return nil, fault.New(fault.TooMany, "too many login attempts from %s: try again in %s", caller, wait.Round(time.Second))
	}
	kr := &keeperv1.SealedKeyring{KeyringId: stored.ID, KdfParams: stored.KDFParams, Ciphertext: stored.Ciphertext}
	_, err = o.keeper.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: pw, Keyring: kr}))
	if err != nil {
		done(false)
		err = keeperFault("unseal keeper", err)
		if fault.CodeOf(err) == fault.Invalid {
			o.log.Warn("wrong admin password", "caller", caller)
		}
		return nil, err
	}
	// Keeper accepted the password.
	done(true)
	if st := o.keys.Check(ctx); !st.Unsealed {
		return nil, st.Err()
	}
	return stored.ID, nil
}

func (o operator) unsealKeeper(ctx context.Context, pw []byte, kr *keeperv1.SealedKeyring) error {
	_, err := o.keeper.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: pw, Keyring: kr}))
	if err != nil {
		return keeperFault("unseal keeper", err)
	}
	if st := o.keys.Check(ctx); !st.Unsealed {
		return st.Err()
	}
	return nil
}

// Status reports on the installation. It answers even when sealed.
func (o operator) Status(ctx context.Context, _ *connect.Request[nexusv1.StatusRequest]) (*connect.Response[nexusv1.StatusResponse], error) {
	version, err := o.store.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	st := o.keys.Check(ctx)
	resp := &nexusv1.StatusResponse{
		Initialized:     st.Initialised,
		Sealed:          !st.Unsealed,
		SchemaVersion:   version,
		KeeperReachable: st.KeeperErr == nil,
		KeyringId:       hex.EncodeToString(st.KeyringID),
		NexusVersion:    o.version,
	}
	if st.KeeperErr != nil {
		resp.KeeperError = connect.CodeOf(st.KeeperErr).String() + ": Keeper did not answer"
	}
	return connect.NewResponse(resp), nil
}

var errAlreadyInitialised = fault.New(fault.FailedPrecondition, "SPIKE is already initialised")

func checkPassword(pw []byte) error {
	if len(pw) < minPasswordLen || len(pw) > maxPasswordLen {
		return fault.New(fault.Invalid, "password: must be %d to %d bytes long", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// keeperFault turns a failed Keeper call made by an operator RPC into a
// domain error. Keeper's own messages are written for operators and never
// contain key material, so they are passed on.
func keeperFault(op string, err error) error {
	msg := err.Error()
	if ce, ok := err.(*connect.Error); ok {
		msg = ce.Message()
	}
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument:
		if strings.HasPrefix(msg, "keyring") {
			// Keeper found the stored keyring malformed: the row was altered.
			return fault.Wrap(fault.DataLoss, err, "%s: the stored keyring is corrupt (%s)", op, msg)
		}
		return fault.Wrap(fault.Invalid, err, "%s: %s", op, msg)
	case connect.CodeFailedPrecondition:
		return fault.Wrap(fault.FailedPrecondition, err, "%s: %s", op, msg)
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return err
	}
	return fault.Wrap(fault.Unavailable, err, "%s: Keeper is unavailable", op)
}
