package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/password"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/token"
)

// operatorServer implements nexusv1connect.OperatorServiceHandler.
type operatorServer struct{ *Server }

// Init creates the root keyring through Keeper, stores it sealed, and
// unseals Keeper with it. The keyring table holds at most one row, so of
// concurrent inits exactly one succeeds.
func (o operatorServer) Init(ctx context.Context, req *connect.Request[nexusv1.InitRequest]) (*connect.Response[nexusv1.InitResponse], error) {
	return unary(ctx, o.Server, req, o.init)
}

func (o operatorServer) init(ctx context.Context, c *call, m *nexusv1.InitRequest) (*nexusv1.InitResponse, error) {
	slots := keeper.Slots{Password: m.GetPassword(), ShareThreshold: m.GetShareThreshold(), ShareCount: m.GetShareCount()}
	defer clear(slots.Password)
	if err := checkSlots(slots, "password"); err != nil {
		return nil, err
	}
	initialised, err := o.store.Initialized(ctx)
	if err != nil {
		return nil, err
	}
	if initialised {
		return nil, errAlreadyInitialised
	}
	kr, shares, err := o.keeper.Init(ctx, slots)
	if err != nil {
		return nil, err
	}
	c.mustDeliver = len(shares) > 0
	if err := o.store.CreateKeyring(ctx, c.record, kr); err != nil {
		switch {
		case fault.CodeOf(err) != fault.Unknown:
			return nil, err
		case o.stored(ctx, kr):
			// The commit's answer was lost, but the keyring is there.
		case len(shares) > 0:
			// Undecided (a commit may still land): the shares, held
			// nowhere else, must reach the caller.
			return &nexusv1.InitResponse{KeyringId: hex.EncodeToString(kr.ID), Shares: shares,
				Problem: "the database's answer was lost: SPIKE may or may not be initialised with these shares; keep them and look with 'spike operator status'"}, nil
		default:
			return nil, err
		}
	}
	o.log.Info("initialised", "keyring_id", hex.EncodeToString(kr.ID), "password", len(slots.Password) > 0,
		"share_threshold", slots.ShareThreshold, "share_count", slots.ShareCount)
	creds := keeper.Credentials{Password: slots.Password}
	if len(creds.Password) == 0 {
		creds.Shares = shares
	}
	resp := &nexusv1.InitResponse{KeyringId: hex.EncodeToString(kr.ID), Shares: shares}
	err = o.keeper.Unseal(ctx, creds, kr)
	if st := o.checkKeepers(ctx); err == nil && !st.Unsealed {
		err = st.Err()
	}
	if err != nil {
		// The keyring is stored: a retry of Init would only say "already
		// initialised". Say what happened and what to do.
		err = fault.Wrap(fault.FailedPrecondition, err,
			"SPIKE is initialised, but Keeper could not be unsealed (%s): run `spike operator unseal`", err.Error())
	} else {
		resp.Token, err = o.issue(ctx, c, 0)
	}
	if err != nil && len(shares) > 0 {
		// Nothing else holds the shares: they must reach the caller, with
		// what went wrong.
		o.log.Warn("initialised with shares, but not unsealed or no token issued", "error", err)
		resp.Problem = err.Error()
		return resp, nil
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Unseal sends the stored keyring and the password or shares to Keeper.
func (o operatorServer) Unseal(ctx context.Context, req *connect.Request[nexusv1.UnsealRequest]) (*connect.Response[nexusv1.UnsealResponse], error) {
	return unary(ctx, o.Server, req, o.unseal)
}

func (o operatorServer) unseal(ctx context.Context, c *call, m *nexusv1.UnsealRequest) (*nexusv1.UnsealResponse, error) {
	creds := keeper.Credentials{Password: m.GetPassword(), Shares: m.GetShares()}
	defer clearCredentials(creds)
	id, err := o.checkCredentialsWithKeeper(ctx, c, creds)
	if err != nil {
		return nil, err
	}
	return &nexusv1.UnsealResponse{KeyringId: hex.EncodeToString(id)}, nil
}

// Login checks the admin password or shares (Keeper opens the stored
// keyring with them, unsealing SPIKE if it was sealed) and issues an admin
// token bound to the caller's SPIFFE ID.
func (o operatorServer) Login(ctx context.Context, req *connect.Request[nexusv1.LoginRequest]) (*connect.Response[nexusv1.LoginResponse], error) {
	return unary(ctx, o.Server, req, o.login)
}

func (o operatorServer) login(ctx context.Context, c *call, m *nexusv1.LoginRequest) (*nexusv1.LoginResponse, error) {
	creds := keeper.Credentials{Password: m.GetPassword(), Shares: m.GetShares()}
	defer clearCredentials(creds)
	if m.GetTtlSeconds() < 0 {
		return nil, fault.New(fault.Invalid, "ttl_seconds: must not be negative")
	}
	if _, err := o.checkCredentialsWithKeeper(ctx, c, creds); err != nil {
		return nil, err
	}
	token, err := o.issue(ctx, c, time.Duration(min(m.GetTtlSeconds(), math.MaxInt64/int64(time.Second)))*time.Second)
	if err != nil {
		return nil, err
	}
	return &nexusv1.LoginResponse{Token: token}, nil
}

// Rekey has a Keeper seal the stored keyring again with new credentials,
// given the current ones, and stores the result in place of the keyring
// it read (compare-and-set, with the audit record). The root keys do not
// change, so no Keeper needs to do anything.
func (o operatorServer) Rekey(ctx context.Context, req *connect.Request[nexusv1.RekeyRequest]) (*connect.Response[nexusv1.RekeyResponse], error) {
	return unary(ctx, o.Server, req, o.rekey)
}

func (o operatorServer) rekey(ctx context.Context, c *call, m *nexusv1.RekeyRequest) (*nexusv1.RekeyResponse, error) {
	creds := keeper.Credentials{Password: m.GetPassword(), Shares: m.GetShares()}
	defer clearCredentials(creds)
	slots := keeper.Slots{Password: m.GetNewPassword(), ShareThreshold: m.GetNewShareThreshold(), ShareCount: m.GetNewShareCount()}
	defer clear(slots.Password)
	if err := checkCredentials(creds); err != nil {
		return nil, err
	}
	if err := checkSlots(slots, "new_password"); err != nil {
		return nil, err
	}
	stored, err := o.store.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.keeper.RolledBack(stored); err != nil {
		return nil, err
	}
	c.record.SetTarget(hex.EncodeToString(stored.ID))
	var next keeper.Keyring
	var shares [][]byte
	err = o.withBackoff(c, func() error {
		var err error
		next, shares, err = o.keeper.Rekey(ctx, creds, stored, slots)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.RekeyResponse{KeyringId: hex.EncodeToString(next.ID), Epoch: next.Epoch, Shares: shares}
	if err := o.store.UpdateKeyring(ctx, c.record, stored, next); err != nil {
		switch {
		case fault.CodeOf(err) != fault.Unknown:
			return nil, err
		case o.stored(ctx, next):
			// The commit's answer was lost, but the new keyring is there
			// (and the admin tokens are gone with the old one).
		case len(shares) == 0 && o.stored(ctx, stored):
			return nil, fault.Wrap(fault.Unavailable, err, "rekey: the new keyring was not stored; the old credentials still open it")
		case len(shares) > 0:
			// Even if the old row is still there, a commit waiting for a
			// synchronous standby may land later: the shares must reach
			// the caller whatever happens.
			c.mustDeliver = true
			// Undecided, and the new shares are held nowhere else.
			resp.Problem = "the database's answer was lost: the new keyring may or may not be stored. Keep these shares AND the old credentials until 'spike operator status' and an unseal tell which opens it"
			o.log.Warn("rekey outcome unknown; the new shares are returned anyway", "error", err)
			return resp, nil
		default:
			return nil, err
		}
	}
	c.mustDeliver = len(shares) > 0
	// Keepers refuse the old keyring from now on, and hold the new one:
	// only the new credentials open its keyring key, which rotations need.
	o.keeper.Committed(next.ID, next.Epoch)
	adopt := keeper.Credentials{Password: slots.Password}
	if len(shares) > 0 {
		adopt = keeper.Credentials{Shares: shares} // no key derivation
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 25*time.Second)
	o.keeper.Adopt(actx, adopt, next)
	cancel()
	o.checkKeepers(ctx)
	// Every admin token went with the old credentials: the caller gets a
	// new one.
	if resp.Token, err = o.issue(ctx, c, 0); err != nil {
		o.log.Warn("rekeyed, but no new admin token could be issued", "error", err)
		resp.Token = nil
	}
	o.log.Warn("root keyring rekeyed: the old password and shares no longer open it; every admin token revoked",
		"keyring_id", hex.EncodeToString(next.ID), "epoch", next.Epoch, "password", len(slots.Password) > 0,
		"share_threshold", slots.ShareThreshold, "share_count", slots.ShareCount)
	return resp, nil
}

// stored reports whether the database now holds exactly kr, read with time
// of its own: after a write whose commit was not answered, this is how to
// learn whether it was applied.
func (o operatorServer) stored(ctx context.Context, kr keeper.Keyring) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	got, err := o.store.Keyring(ctx)
	return err == nil && bytes.Equal(got.ID, kr.ID) && bytes.Equal(got.KDFParams, kr.KDFParams) &&
		bytes.Equal(got.Ciphertext, kr.Ciphertext) && bytes.Equal(got.Sealed, kr.Sealed) && got.Epoch == kr.Epoch
}

// Logout revokes the token the request carries.
func (o operatorServer) Logout(ctx context.Context, req *connect.Request[nexusv1.LogoutRequest]) (*connect.Response[nexusv1.LogoutResponse], error) {
	return unary(ctx, o.Server, req, o.logout)
}

func (o operatorServer) logout(ctx context.Context, c *call, _ *nexusv1.LogoutRequest) (*nexusv1.LogoutResponse, error) {
	c.record.SetTarget(token.ID(c.token))
	if err := o.tokens.Revoke(ctx, c.record, c.token); err != nil {
		return nil, err
	}
	return &nexusv1.LogoutResponse{}, nil
}

// issue makes an admin token for the caller.
func (o operatorServer) issue(ctx context.Context, c *call, ttl time.Duration) (*nexusv1.AdminToken, error) {
	tok, expires, err := o.tokens.Issue(ctx, c.record, c.caller, ttl)
	if err != nil {
		return nil, err
	}
	c.record.SetTarget(token.ID(tok))
	return &nexusv1.AdminToken{Token: tok, ExpiresAt: timestamppb.New(expires)}, nil
}

// checkCredentialsWithKeeper has Keeper open the stored keyring with the
// password or shares.
func (o operatorServer) checkCredentialsWithKeeper(ctx context.Context, c *call, creds keeper.Credentials) ([]byte, error) {
	if err := checkCredentials(creds); err != nil {
		return nil, err
	}
	stored, err := o.store.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	if err := o.keeper.RolledBack(stored); err != nil {
		return nil, err
	}
	if err := o.withBackoff(c, func() error { return o.keeper.Unseal(ctx, creds, stored) }); err != nil {
		return nil, err
	}
	if st := o.checkKeepers(ctx); !st.Unsealed {
		return nil, st.Err()
	}
	return stored.ID, nil
}

// withBackoff runs try, a check of credentials by Keeper. Wrong
// credentials slow the caller down: each failure doubles the wait before
// its next attempt is even considered, and a caller has one attempt in
// flight at a time, so parallel guesses cannot all run before the first
// failure counts. An attempt that ends without Keeper's verdict (Keeper or
// the database unavailable, request cancelled) counts as a failure too:
// the backoff fails closed.
func (o operatorServer) withBackoff(c *call, try func() error) error {
	caller := c.caller.String()
	done, wait := o.backoff.Begin(caller)
	if wait > 0 {
		return fault.New(fault.TooMany, "too many login attempts from %s: try again in %s", caller, wait.Round(time.Second))
	}
	if err := try(); err != nil {
		done(false)
		switch {
		case errors.Is(err, keeper.ErrWrongPassword):
			o.log.Warn("wrong admin password", "caller", caller)
		case errors.Is(err, keeper.ErrWrongShares):
			o.log.Warn("wrong unseal shares", "caller", caller)
		}
		return err
	}
	done(true)
	return nil
}

// Seal has every Keeper forget the root key. The audit record names the
// caller, as for every call.
func (o operatorServer) Seal(ctx context.Context, req *connect.Request[nexusv1.SealRequest]) (*connect.Response[nexusv1.SealResponse], error) {
	return unary(ctx, o.Server, req, o.seal)
}

func (o operatorServer) seal(ctx context.Context, _ *call, _ *nexusv1.SealRequest) (*nexusv1.SealResponse, error) {
	results, err := o.keeper.Seal(ctx)
	if err != nil {
		return nil, err
	}
	o.log.Warn("sealed on request")
	keepers := keeperStatuses(o.keeper.State())
	for i, r := range results {
		if i < len(keepers) {
			keepers[i].SealConfirmed = r.Sealed
		}
	}
	return &nexusv1.SealResponse{Keepers: keepers}, nil
}

// checkKeepers asks the Keepers for their state after a change, with time
// of its own: the request's may be nearly spent by the key derivation.
func (o operatorServer) checkKeepers(ctx context.Context) keeper.State {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	return o.keeper.Check(ctx)
}

// keeperStatuses reports each Keeper's state; errors only by their code, so
// that no detail of a connection reaches the caller.
func keeperStatuses(st keeper.State) []*nexusv1.KeeperStatus {
	out := make([]*nexusv1.KeeperStatus, 0, len(st.Keepers))
	for _, k := range st.Keepers {
		ks := &nexusv1.KeeperStatus{
			Url:              k.Name,
			Reachable:        k.Err == nil,
			HoldsKeyring:     k.Holds,
			ActiveKeyVersion: k.ActiveKeyVersion,
			OldestKeyVersion: k.OldestKeyVersion,
			Epoch:            k.Epoch,
			SealedOnPurpose:  k.SealedOnPurpose,
			Source:           k.Source,
		}
		if len(k.KeyringID) > 0 {
			ks.KeyringId = hex.EncodeToString(k.KeyringID)
		}
		if k.Err != nil {
			ks.Error = connect.CodeOf(k.Err).String() + ": Keeper did not answer"
		}
		out = append(out, ks)
	}
	return out
}

// Status reports on the installation. It answers even when sealed.
func (o operatorServer) Status(ctx context.Context, req *connect.Request[nexusv1.StatusRequest]) (*connect.Response[nexusv1.StatusResponse], error) {
	return unary(ctx, o.Server, req, o.status)
}

func (o operatorServer) status(ctx context.Context, c *call, _ *nexusv1.StatusRequest) (*nexusv1.StatusResponse, error) {
	version, err := o.store.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	st := o.keeper.Check(ctx)
	resp := &nexusv1.StatusResponse{
		Initialized:     st.Initialised,
		Sealed:          !st.Unsealed,
		SchemaVersion:   version,
		KeeperReachable: st.KeeperErr == nil,
		KeyringId:       hex.EncodeToString(st.KeyringID),
		NexusVersion:    o.version,
		Keepers:         keeperStatuses(st),
	}
	if st.KeeperErr != nil {
		resp.KeeperError = connect.CodeOf(st.KeeperErr).String() + ": no Keeper answered"
	}
	return resp, nil
}

var errAlreadyInitialised = fault.New(fault.FailedPrecondition, "SPIKE is already initialised")

func checkPassword(pw []byte) error {
	if password.CheckLength(pw) != nil {
		return fault.New(fault.Invalid, "password: must be %d to %d bytes long", password.MinLen, password.MaxLen)
	}
	return nil
}

// checkCredentials checks the form of current credentials: the password
// or shares, not both. Keeper checks the shares themselves.
func checkCredentials(creds keeper.Credentials) error {
	switch {
	case len(creds.Password) > 0 && len(creds.Shares) > 0:
		return fault.New(fault.Invalid, "give the password or shares, not both")
	case len(creds.Shares) > 0:
		return nil
	}
	return checkPassword(creds.Password)
}

// checkSlots checks the form of new credentials: a password (named field)
// of the right length and/or shares. Keeper checks the password's strength
// and the split.
func checkSlots(slots keeper.Slots, field string) error {
	switch {
	case len(slots.Password) > 0:
		if password.CheckLength(slots.Password) != nil {
			return fault.New(fault.Invalid, "%s: must be %d to %d bytes long", field, password.MinLen, password.MaxLen)
		}
	case slots.ShareThreshold == 0 && slots.ShareCount == 0:
		return fault.New(fault.Invalid, "%s or shares are required", field)
	}
	return nil
}

// clearCredentials zeroes the credentials of a request.
func clearCredentials(creds keeper.Credentials) {
	clear(creds.Password)
	for _, s := range creds.Shares {
		clear(s)
	}
}
