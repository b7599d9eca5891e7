// Package keeper is Nexus's client of Keeper. Every call Nexus makes to
// Keeper goes through a Client, which also knows whether SPIKE is sealed
// (Keeper holds this database's root keyring or not) and turns Keeper's
// errors into domain errors in one table (errors.go).
package keeper

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/singleflight"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Keyring is the root keyring as stored: sealed by Keeper under a key
// derived from the admin password. Nexus cannot open it.
type Keyring struct {
	// ID identifies the keyring; Keeper refuses to unseal a different one
	// while holding this one.
	ID []byte
	// KDFParams are the Argon2id salt and parameters that derive the
	// key-encryption key from the password.
	KDFParams []byte
	// Ciphertext is the sealed keyring.
	Ciphertext []byte
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// DataKey is a new data key from Keeper: in the clear, and wrapped under
// one version of the root key.
type DataKey struct {
	Plaintext      []byte
	Wrapped        []byte
	RootKeyVersion uint32
}

const unsealHint = "unseal with: echo '<password>' | spike operator unseal"

// State is what Nexus knows about Keeper and the root keyring.
type State struct {
	// Initialised is true once the database holds a keyring.
	Initialised bool
	// Unsealed is true when Keeper holds this database's keyring.
	Unsealed bool
	// KeyringID is the id of this database's keyring, when initialised.
	KeyringID []byte
	// KeeperErr says why Keeper could not be reached, if it could not.
	KeeperErr error
	// DBErr says why the keyring could not be read, if it could not.
	DBErr error
	// reason explains a sealed state to callers.
	reason string
}

// Err returns the caller-facing error for a state that cannot serve
// secrets, or nil when it can. A dependency that is down is Unavailable
// (clients retry it); a Keeper without the keyring is FailedPrecondition.
func (s State) Err() error {
	switch {
	case !s.Initialised && s.DBErr != nil:
		return fault.Wrap(fault.Unavailable, s.DBErr, "database unavailable")
	case !s.Initialised:
		return fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")
	case s.KeeperErr != nil:
		return fault.Wrap(fault.Unavailable, s.KeeperErr, "SPIKE is sealed: %s; when it is back, %s", s.reason, unsealHint)
	case !s.Unsealed:
		return fault.New(fault.FailedPrecondition, "SPIKE is sealed: %s; %s", s.reason, unsealHint)
	}
	return nil
}

// Keyrings is what the client needs of the database: the stored keyring.
type Keyrings interface {
	// Keyring returns the stored root keyring; before initialisation a
	// fault.FailedPrecondition error.
	Keyring(ctx context.Context) (Keyring, error)
}

// Client calls Keeper and keeps the sealed/unsealed state. It is safe for
// concurrent use.
type Client struct {
	rpc      keeperv1connect.KeeperServiceClient
	keyrings Keyrings
	log      *slog.Logger

	// seq numbers state observations; applied is the newest one applied,
	// so a slow Check never overwrites what a later one saw.
	seq atomic.Uint64
	// recheck shares one Check among the requests that found the state
	// unable to serve.
	recheck singleflight.Group

	mu      sync.RWMutex
	applied uint64
	state   State
	onSeal  []func()
}

// New returns a Client of Keeper reached through rpc. It starts sealed;
// call Check or Watch.
func New(rpc keeperv1connect.KeeperServiceClient, keyrings Keyrings, log *slog.Logger) *Client {
	return &Client{
		rpc:      rpc,
		keyrings: keyrings,
		log:      log,
		state:    State{reason: "Nexus has not reached Keeper yet"},
	}
}

// OnSeal registers f to run whenever the client learns that SPIKE cannot
// serve (sealed, Keeper unreachable), so that whoever caches keys drops
// them at once. Register before the client is in use.
func (c *Client) OnSeal(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onSeal = append(c.onSeal, f)
}

// State returns the last known state.
func (c *Client) State() State {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state
}

// Unsealed reports whether Keeper held this database's keyring when last
// asked.
func (c *Client) Unsealed() bool { return c.State().Unsealed }

// Ready returns nil when secrets can be served, and otherwise the reason as
// a caller-facing error. When the last known state cannot serve, it checks
// again first (one check at a time, shared by concurrent callers): another
// Nexus replica may have initialised or unsealed SPIKE since the last
// periodic check.
func (c *Client) Ready(ctx context.Context) error {
	if err := c.State().Err(); err == nil {
		return nil
	}
	ch := c.recheck.DoChan("check", func() (any, error) {
		return c.Check(context.WithoutCancel(ctx)), nil
	})
	select {
	case r := <-ch:
		return r.Val.(State).Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Watch calls Check every interval until ctx is done, so that a Keeper
// restart (which loses the keyring) drops every cached key within one
// interval.
func (c *Client) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Check(ctx)
		}
	}
}

// checkTimeout bounds each of the two questions one Check asks.
const checkTimeout = 3 * time.Second

// Check asks the database and Keeper for the current state and updates it.
// The keyring id never changes once stored, so after the first success only
// Keeper is asked: a busy database (an exhausted pool) cannot make SPIKE
// look sealed.
func (c *Client) Check(ctx context.Context) State {
	seq := c.seq.Add(1)
	prev := c.State()
	next := State{Initialised: prev.Initialised, KeyringID: prev.KeyringID}
	if !prev.Initialised {
		dbCtx, cancel := context.WithTimeout(ctx, checkTimeout)
		kr, err := c.keyrings.Keyring(dbCtx)
		cancel()
		switch {
		case fault.CodeOf(err) == fault.FailedPrecondition:
			next.reason = "not initialised"
		case err != nil:
			c.log.Warn("keyring lookup failed", "error", err)
			next.DBErr = err
		default:
			next.Initialised = true
			next.KeyringID = kr.ID
		}
	}

	keeperCtx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	resp, err := c.rpc.Status(keeperCtx, connect.NewRequest(&keeperv1.StatusRequest{}))
	switch {
	case err != nil:
		next.KeeperErr = err
		next.reason = "Keeper is unreachable"
	case !resp.Msg.GetUnsealed():
		next.reason = "Keeper holds no root key (it has restarted or was never unsealed)"
	case next.Initialised && !bytes.Equal(resp.Msg.GetKeyringId(), next.KeyringID):
		next.reason = "Keeper holds another keyring than this database's"
	case next.Initialised:
		next.Unsealed = true
	}
	return c.setState(seq, next)
}

// setState applies the observation numbered seq unless a newer one was
// applied already, and returns the state in force. A state that cannot
// serve runs the OnSeal functions, after the state is in force, so that no
// key cached from then on survives.
func (c *Client) setState(seq uint64, next State) State {
	c.mu.Lock()
	if seq < c.applied {
		st := c.state
		c.mu.Unlock()
		return st
	}
	c.applied = seq
	prev := c.state
	c.state = next
	onSeal := c.onSeal
	c.mu.Unlock()

	if !next.Unsealed {
		for _, f := range onSeal {
			f()
		}
	}
	if prev.Unsealed != next.Unsealed {
		if next.Unsealed {
			c.log.Info("unsealed", "keyring_id", hex.EncodeToString(next.KeyringID))
		} else {
			c.log.Warn("sealed", "reason", next.reason, "keeper_error", errString(next.KeeperErr))
		}
	}
	return next
}

// markSealed records that Keeper answered "sealed" to a key request.
func (c *Client) markSealed() {
	seq := c.seq.Add(1)
	st := c.State()
	st.Unsealed = false
	st.reason = "Keeper holds no root key (it has restarted)"
	c.setState(seq, st)
}

// Init has Keeper create a new root keyring sealed under password. Keeper
// does not hold it yet: store it, then Unseal.
func (c *Client) Init(ctx context.Context, password []byte) (Keyring, error) {
	resp, err := c.rpc.Init(ctx, connect.NewRequest(&keeperv1.InitRequest{Password: password}))
	if err != nil {
		return Keyring{}, c.translate("create keyring", err)
	}
	kr := resp.Msg.GetKeyring()
	return Keyring{ID: kr.GetKeyringId(), KDFParams: kr.GetKdfParams(), Ciphertext: kr.GetCiphertext()}, nil
}

// Unseal sends the stored keyring and password to Keeper, which opens the
// keyring with it. A nil error is Keeper's verdict that the password is
// right; Check then tells whether SPIKE can serve.
func (c *Client) Unseal(ctx context.Context, password []byte, kr Keyring) error {
	sealed := &keeperv1.SealedKeyring{KeyringId: kr.ID, KdfParams: kr.KDFParams, Ciphertext: kr.Ciphertext}
	_, err := c.rpc.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: password, Keyring: sealed}))
	if err != nil {
		return c.translate("unseal keeper", err)
	}
	return nil
}

// GenerateDataKey has Keeper make a new data key named id. The caller owns
// (and should clear) the plaintext.
func (c *Client) GenerateDataKey(ctx context.Context, id []byte) (DataKey, error) {
	resp, err := c.rpc.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: id}))
	if err != nil {
		return DataKey{}, c.translate("generate data key", err)
	}
	return DataKey{
		Plaintext:      resp.Msg.GetPlaintext(),
		Wrapped:        resp.Msg.GetWrapped(),
		RootKeyVersion: resp.Msg.GetRootKeyVersion(),
	}, nil
}

// DecryptDataKey has Keeper unwrap the data key id. The caller owns (and
// should clear) the plaintext.
func (c *Client) DecryptDataKey(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, error) {
	resp, err := c.rpc.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
		DekId:          id,
		Wrapped:        wrapped,
		RootKeyVersion: rootKeyVersion,
	}))
	if err != nil {
		return nil, c.translate("unwrap data key "+hex.EncodeToString(id), err)
	}
	return resp.Msg.GetPlaintext(), nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
