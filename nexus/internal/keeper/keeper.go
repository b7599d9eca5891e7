// Package keeper is Nexus's client of the Keepers. Every call Nexus makes
// to a Keeper goes through a Client, which knows whether SPIKE is sealed
// (no Keeper holds this database's root keyring) or not, sends each call
// to a Keeper that holds it and fails over to the next at once, and turns
// Keeper's errors into domain errors in one table (errors.go).
package keeper

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sync/singleflight"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/rpcclient"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Keyring is the root keyring as stored: sealed by Keeper, in format 1
// (under a key derived from the admin password: KDFParams, Ciphertext) or
// format 2 (Sealed: slots for the password and/or shares). Nexus cannot
// open it.
type Keyring struct {
	// ID identifies the keyring; Keeper refuses to unseal a different one
	// while holding this one.
	ID []byte
	// KDFParams are the Argon2id salt and parameters that derive the
	// key-encryption key from the password (format 1).
	KDFParams []byte
	// Ciphertext is the sealed keyring (format 1).
	Ciphertext []byte
	// Sealed is the sealed keyring in format 2, nil in format 1.
	Sealed []byte
	// Epoch is format 2's epoch as Keeper reported it (0 in format 1):
	// for operators and for compare-and-set, never trusted by Keeper.
	Epoch uint64
	// CreatedAt is set by the database.
	CreatedAt time.Time
}

// DataKey is a new data key from Keeper: in the clear, and wrapped under
// one version of the root key.
type DataKey struct {
	Plaintext      []byte
	Wrapped        []byte
	RootKeyVersion uint32
	// Epoch is the epoch of the keyring that wrapped it.
	Epoch uint64
}

const unsealHint = "unseal with: echo '<password>' | spike operator unseal (or spike operator unseal --shares)"

// Endpoint is one Keeper that Nexus may call.
type Endpoint struct {
	// Name identifies the Keeper in logs and status: its URL.
	Name string
	// RPC calls it.
	RPC keeperv1connect.KeeperServiceClient
}

// Instance is what Nexus last learned of one Keeper.
type Instance struct {
	// Name is the Endpoint's.
	Name string
	// Err says why the Keeper could not be asked, if it could not.
	Err error
	// Unsealed is true when it holds a keyring (perhaps not this
	// database's: see Holds).
	Unsealed bool
	// Holds is true when it holds this database's keyring.
	Holds bool
	// KeyringID, Epoch, ActiveKeyVersion and OldestKeyVersion describe
	// the keyring it holds.
	KeyringID        []byte
	Epoch            uint64
	ActiveKeyVersion uint32
	OldestKeyVersion uint32
	// SealedOnPurpose is true after spike operator seal, until an unseal.
	SealedOnPurpose bool
	// Source says how it got its keyring: "unseal" or "peer <url>".
	Source string
	// Suspect is set when it held the keyring but did not answer in time
	// once: it is still counted as holding until it misses again, so that
	// one slow answer does not seal SPIKE.
	Suspect bool
}

// State is what Nexus knows about the Keepers and the root keyring.
type State struct {
	// Initialised is true once the database holds a keyring.
	Initialised bool
	// Unsealed is true when at least one Keeper holds this database's
	// keyring.
	Unsealed bool
	// KeyringID is the id of this database's keyring, when initialised.
	KeyringID []byte
	// KeeperErr says why no Keeper could be reached, if none could.
	KeeperErr error
	// DBErr says why the keyring could not be read, if it could not.
	DBErr error
	// Keepers holds each Keeper's state, in configuration order.
	Keepers []Instance
	// reason explains a sealed state to callers.
	reason string
}

// Err returns the caller-facing error for a state that cannot serve
// secrets, or nil when it can. A dependency that is down is Unavailable
// (clients retry it); Keepers without the keyring are FailedPrecondition.
func (s State) Err() error {
	switch {
	case !s.Initialised && s.DBErr != nil:
		return fault.Wrap(fault.Unavailable, s.DBErr, "database unavailable")
	case !s.Initialised:
		return fault.New(fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`").Because(fault.NotInitialised)
	case s.Unsealed:
		return nil
	case s.KeeperErr != nil:
		return fault.Wrap(fault.Unavailable, s.KeeperErr, "SPIKE is sealed: %s; when one is back, %s", s.reason, unsealHint)
	}
	return fault.New(fault.FailedPrecondition, "SPIKE is sealed: %s; %s", s.reason, unsealHint).Because(fault.Sealed)
}

// holders returns the indexes of the Keepers that hold the keyring.
func (s State) holders() []int {
	var h []int
	for i, k := range s.Keepers {
		if k.Holds {
			h = append(h, i)
		}
	}
	return h
}

// Keyrings is what the client needs of the database: the stored keyring.
type Keyrings interface {
	// Keyring returns the stored root keyring; before initialisation a
	// fault.FailedPrecondition error.
	Keyring(ctx context.Context) (Keyring, error)
}

// Client calls the Keepers and keeps the sealed/unsealed state. It is safe
// for concurrent use.
type Client struct {
	keepers  []Endpoint
	keyrings Keyrings
	log      *slog.Logger
	// preferred is the Keeper that answered last: calls go there first.
	preferred atomic.Uint32
	// committed is the highest epoch of a keyring this Nexus has seen
	// committed, and that keyring's id; Keepers are told it, and refuse an
	// older copy of that keyring.
	committed atomic.Pointer[committedKeyring]
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

// New returns a Client of the Keepers (at least one). It starts sealed;
// call Check or Watch.
func New(keepers []Endpoint, keyrings Keyrings, log *slog.Logger) *Client {
	c := &Client{
		keepers:  keepers,
		keyrings: keyrings,
		log:      log,
		state:    State{reason: "Nexus has not reached a Keeper yet"},
	}
	for _, k := range keepers {
		c.state.Keepers = append(c.state.Keepers, Instance{Name: k.Name, Err: errors.New("not asked yet")})
	}
	return c
}

// OnSeal registers f to run whenever the client learns that SPIKE cannot
// serve (sealed, Keepers unreachable), so that whoever caches keys drops
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

// committedKeyring is a keyring's id and the epoch it was committed at.
type committedKeyring struct {
	id    []byte
	epoch uint64
}

// Committed records that keyring id reached epoch e (a rekey was
// committed): from the next Check on, Keepers refuse a stored copy of it
// at a lower epoch, one rolled back in the database.
func (c *Client) Committed(id []byte, e uint64) {
	for {
		cur := c.committed.Load()
		if cur != nil && bytes.Equal(cur.id, id) && e <= cur.epoch {
			return
		}
		if c.committed.CompareAndSwap(cur, &committedKeyring{id: bytes.Clone(id), epoch: e}) {
			return
		}
	}
}

// floor is the epoch below which keyring id was rolled back: 0 unless this
// Nexus saw a rekey of it committed.
func (c *Client) floor(id []byte) uint64 {
	if cur := c.committed.Load(); cur != nil && bytes.Equal(cur.id, id) {
		return cur.epoch
	}
	return 0
}

// RolledBack returns an error when kr is older than the same keyring as
// this Nexus saw it committed.
func (c *Client) RolledBack(kr Keyring) error {
	if seen := c.floor(kr.ID); kr.Epoch < seen {
		return fault.New(fault.DataLoss, "the stored root keyring is at epoch %d, older than epoch %d committed before: it was rolled back in the database", kr.Epoch, seen)
	}
	return nil
}

// Unsealed reports whether a Keeper held this database's keyring when last
// asked.
func (c *Client) Unsealed() bool { return c.State().Unsealed }

// Ready returns nil when secrets can be served, and otherwise the reason as
// a caller-facing error. When the last known state cannot serve, it checks
// again first (one check at a time, shared by concurrent callers): another
// Nexus replica may have initialised or unsealed SPIKE since the last
// periodic check, or a Keeper re-seeded from a peer.
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
// restart (which loses the keyring) is noticed within one interval and a
// Keeper that re-seeded is used again.
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

// Time limits: the database question of a Check; each Keeper's answer to a
// Check; one attempt of a key call while another Keeper is left to try;
// one Keeper's answer to Seal, and to Init or Unseal (which derive a key
// from the password).
const (
	dbCheckTimeout     = 3 * time.Second
	keeperCheckTimeout = 800 * time.Millisecond
	attemptTimeout     = 700 * time.Millisecond
	sealTimeout        = 2 * time.Second
	kdfTimeout         = 20 * time.Second
)

// Check asks the database and every Keeper (at once) for the current state
// and updates it. The keyring id never changes once stored, so after the
// first success only the Keepers are asked: a busy database (an exhausted
// pool) cannot make SPIKE look sealed. Each Keeper is told the keyring id,
// so that one without it asks its peers for it.
func (c *Client) Check(ctx context.Context) State {
	seq := c.seq.Add(1)
	prev := c.State()
	next := State{Initialised: prev.Initialised, KeyringID: prev.KeyringID}
	if !prev.Initialised {
		dbCtx, cancel := context.WithTimeout(ctx, dbCheckTimeout)
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
	next.Keepers = c.askAll(ctx, next.KeyringID, prev.Keepers)
	next.summarise()
	return c.setState(seq, next, true)
}

// askAll asks every Keeper for its status at once. A Keeper that held the
// keyring and does not answer in time keeps its last state once, marked
// Suspect.
func (c *Client) askAll(ctx context.Context, keyringID []byte, prev []Instance) []Instance {
	states := make([]Instance, len(c.keepers))
	var wg sync.WaitGroup
	for i, k := range c.keepers {
		wg.Go(func() {
			st := Instance{Name: k.Name}
			kctx, cancel := context.WithTimeout(ctx, keeperCheckTimeout)
			defer cancel()
			resp, err := k.RPC.Status(kctx, connect.NewRequest(&keeperv1.StatusRequest{ExpectedKeyringId: keyringID, MinEpoch: c.floor(keyringID)}))
			switch {
			case err != nil && i < len(prev) && prev[i].Holds && !prev[i].Suspect &&
				connect.CodeOf(err) == connect.CodeDeadlineExceeded && ctx.Err() == nil:
				st = prev[i]
				st.Suspect = true
			case err != nil:
				st.Err = err
			default:
				m := resp.Msg
				st.Unsealed, st.KeyringID, st.ActiveKeyVersion = m.GetUnsealed(), m.GetKeyringId(), m.GetActiveKeyVersion()
				st.Epoch, st.OldestKeyVersion = m.GetEpoch(), m.GetOldestKeyVersion()
				st.SealedOnPurpose, st.Source = m.GetSealedOnPurpose(), m.GetSource()
				st.Holds = st.Unsealed && keyringID != nil && bytes.Equal(st.KeyringID, keyringID)
			}
			states[i] = st
		})
	}
	wg.Wait()
	// The newest epoch a Keeper holds was committed (Keepers advance only
	// to stored epochs): from now on it is the floor, told to the Keepers
	// and sent with every request for a new data key. A Keeper below it
	// (it missed a rotation) still counts as holding: it serves what its
	// versions can, answers stale to the rest (and the next Keeper is
	// asked), and catches up from a peer.
	for _, st := range states {
		if st.Holds {
			c.Committed(keyringID, st.Epoch)
		}
	}
	return states
}

// summarise sets Unsealed, KeeperErr and the reason from the Keepers'
// states.
func (s *State) summarise() {
	var (
		errs                          []error
		answered, other, onPurpose, n int
	)
	for _, k := range s.Keepers {
		switch {
		case k.Err != nil:
			errs = append(errs, k.Err)
			continue
		case k.Holds:
			n++
		case k.Unsealed:
			other++
		case k.SealedOnPurpose:
			onPurpose++
		}
		answered++
	}
	s.Unsealed = s.Initialised && n > 0
	switch {
	case s.Unsealed || !s.Initialised:
	case answered == 0:
		s.KeeperErr = errors.Join(errs...)
		s.reason = "no Keeper answered"
	case other > 0:
		s.reason = "a Keeper holds another keyring than this database's"
	case onPurpose == answered:
		s.reason = "it was sealed on purpose (spike operator seal)"
	default:
		s.reason = "no Keeper holds the root key (they have restarted or were never unsealed)"
	}
}

// setState applies the observation numbered seq unless a newer one was
// applied already, and returns the state in force. A state that cannot
// serve runs the OnSeal functions (when runOnSeal: the Keepers were asked),
// after the state is in force, so that no key cached from then on survives.
func (c *Client) setState(seq uint64, next State, runOnSeal bool) State {
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

	if !next.Unsealed && runOnSeal {
		for _, f := range onSeal {
			f()
		}
	}
	if prev.Unsealed != next.Unsealed {
		if next.Unsealed {
			c.log.Info("unsealed", "keyring_id", hex.EncodeToString(next.KeyringID), "keepers_holding", len(next.holders()))
		} else {
			c.log.Warn("sealed", "reason", next.reason, "keeper_error", errString(next.KeeperErr))
		}
	}
	return next
}

// lost records that Keeper i failed a key call with err (unreachable, or no
// longer holding the keyring), so that calls skip it until the next Check
// says otherwise. It changes the state in place, under the lock, so that a
// newer Check is never overwritten; it does not drop cached keys (only the
// Keepers' own answers to Check do).
func (c *Client) lost(i int, err error) {
	c.mu.Lock()
	st := c.state
	st.Keepers = append([]Instance(nil), st.Keepers...)
	k := &st.Keepers[i]
	k.Holds, k.Suspect = false, false
	switch reasonFor(err) {
	case keeperv1.ErrorDetail_REASON_SEALED:
		k.Unsealed = false
	case keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH:
		k.Unsealed = true
	default:
		k.Err = err
	}
	st.KeeperErr = nil
	st.summarise()
	c.state = st
	c.mu.Unlock()
	c.log.Warn("keeper failed a call; trying the next one", "keeper", c.keepers[i].Name, "error", err)
}

// call runs f against the Keepers that hold the keyring, the preferred one
// first, until one answers. A Keeper that cannot be reached or no longer
// holds the keyring is marked and the next one tried at once; any other
// answer is final. With none left, the error is the sealed state's.
func (c *Client) call(ctx context.Context, op string, f func(context.Context, keeperv1connect.KeeperServiceClient) error) error {
	holders := c.State().holders()
	if len(holders) == 0 {
		if err := c.Ready(ctx); err != nil {
			return err
		}
		holders = c.State().holders()
	}
	first := int(c.preferred.Load())
	order := make([]int, 0, len(holders))
	for _, i := range holders {
		if i == first {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	var lastErr error
	for n, i := range order {
		// Only while another Keeper is left to try is an attempt cut short.
		actx, cancel := ctx, context.CancelFunc(func() {})
		if n < len(order)-1 {
			actx, cancel = context.WithTimeout(ctx, attemptTimeout)
		}
		err := f(actx, c.keepers[i].RPC)
		cancel()
		if err == nil {
			c.preferred.Store(uint32(i))
			return nil
		}
		if ctx.Err() != nil || !failover(err) {
			return c.translate(op, err)
		}
		// A stale answer is about what this request named (a root key
		// version, an epoch): the Keeper still serves the rest.
		if reasonFor(err) != keeperv1.ErrorDetail_REASON_STALE_KEYRING {
			c.lost(i, err)
		}
		lastErr = err
	}
	if serr := c.State().Err(); serr != nil {
		return serr
	}
	// Key calls change nothing: having failed everywhere, nothing happened.
	return fault.Wrap(fault.Unavailable, lastErr, "%s: no Keeper could answer", op)
}

// failover reports whether a failed key call should go to the next Keeper:
// this one could not answer (or refused Nexus), or it holds no keyring
// (any more).
func failover(err error) bool {
	switch reasonFor(err) {
	case keeperv1.ErrorDetail_REASON_SEALED, keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH,
		keeperv1.ErrorDetail_REASON_STALE_KEYRING:
		return true
	case keeperv1.ErrorDetail_REASON_UNSPECIFIED:
	default:
		return false // a verdict on the request, the same from any Keeper
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled,
		connect.CodeUnknown, connect.CodeInternal, connect.CodePermissionDenied:
		return true
	}
	return false
}

// Credentials open a sealed keyring: the admin password, or shares (their
// text forms). Keeper refuses both at once.
type Credentials struct {
	Password []byte
	Shares   [][]byte
}

// Slots are what a new or rekeyed keyring is sealed with: a password
// and/or ShareCount shares of which ShareThreshold open it.
type Slots struct {
	Password                   []byte
	ShareThreshold, ShareCount uint32
}

// Init has a Keeper create a new root keyring sealed with slots, and
// returns it and the shares' text forms. No Keeper holds it yet: store it,
// then Unseal.
func (c *Client) Init(ctx context.Context, slots Slots) (Keyring, [][]byte, error) {
	var (
		kr     Keyring
		shares [][]byte
	)
	err := c.any(ctx, "create keyring", func(ctx context.Context, k Endpoint) error {
		resp, err := k.RPC.Init(ctx, connect.NewRequest(&keeperv1.InitRequest{
			Password: slots.Password, ShareThreshold: slots.ShareThreshold, ShareCount: slots.ShareCount,
		}))
		if err == nil {
			kr, shares = keyringOf(resp.Msg.GetKeyring()), resp.Msg.GetShares()
		}
		return err
	})
	return kr, shares, err
}

// Rekey has a Keeper open kr with the current credentials and seal its
// root keys again with slots, and returns the result (store it in place
// of kr) and the new shares. No Keeper's state changes.
func (c *Client) Rekey(ctx context.Context, creds Credentials, kr Keyring, slots Slots) (Keyring, [][]byte, error) {
	var (
		next   Keyring
		shares [][]byte
	)
	err := c.any(ctx, "rekey", func(ctx context.Context, k Endpoint) error {
		resp, err := k.RPC.Rekey(ctx, connect.NewRequest(&keeperv1.RekeyRequest{
			Keyring: sealedOf(kr), Password: creds.Password, Shares: creds.Shares,
			NewPassword: slots.Password, NewShareThreshold: slots.ShareThreshold, NewShareCount: slots.ShareCount,
		}))
		if err == nil {
			next, shares = keyringOf(resp.Msg.GetKeyring()), resp.Msg.GetShares()
		}
		return err
	})
	return next, shares, err
}

// any calls f on one Keeper after another until one answers with success
// or a verdict; only a Keeper that could not answer is passed over.
func (c *Client) any(ctx context.Context, op string, f func(context.Context, Endpoint) error) error {
	var lastErr error
	for _, k := range c.keepers {
		actx, cancel := context.WithTimeout(ctx, kdfTimeout)
		err := f(actx, k)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !failover(err) {
			return c.translate(op, err)
		}
		lastErr = err
	}
	return c.translate(op, lastErr)
}

// sealedOf is kr as Keeper takes it.
func sealedOf(kr Keyring) *keeperv1.SealedKeyring {
	return &keeperv1.SealedKeyring{KeyringId: kr.ID, KdfParams: kr.KDFParams, Ciphertext: kr.Ciphertext, Sealed: kr.Sealed, Epoch: kr.Epoch}
}

// keyringOf is a sealed keyring from Keeper as stored.
func keyringOf(m *keeperv1.SealedKeyring) Keyring {
	kr := Keyring{ID: m.GetKeyringId(), KDFParams: m.GetKdfParams(), Ciphertext: m.GetCiphertext(), Sealed: m.GetSealed(), Epoch: m.GetEpoch()}
	if len(kr.KDFParams) == 0 {
		kr.KDFParams = nil
	}
	if len(kr.Ciphertext) == 0 {
		kr.Ciphertext = nil
	}
	if len(kr.Sealed) == 0 {
		kr.Sealed = nil
	}
	return kr
}

// Unseal sends the stored keyring and the credentials to every Keeper at
// once; each opens the keyring with them. A nil error is the verdict of
// at least one Keeper that they are right (the others re-seed from it if
// they failed); Check then tells whether SPIKE can serve.
func (c *Client) Unseal(ctx context.Context, creds Credentials, kr Keyring) error {
	sealed := sealedOf(kr)
	// Every Keeper without the keyring, and one that holds it (to judge
	// the credentials): each derivation costs a Keeper real memory and time.
	targets := make([]bool, len(c.keepers))
	judged := false
	for i, k := range c.State().Keepers {
		targets[i] = !k.Holds || !judged
		judged = judged || k.Holds
	}
	errs := c.each(ctx, kdfTimeout, func(ctx context.Context, i int, k Endpoint) error {
		if !targets[i] {
			return errSkipped
		}
		_, err := k.RPC.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: creds.Password, Shares: creds.Shares, Keyring: sealed}))
		return err
	})
	return c.firstVerdict("unseal keeper", errs)
}

// SealResult is one Keeper's answer to Seal.
type SealResult struct {
	Name string
	// Sealed is true when the Keeper confirmed that it holds no keyring
	// and stays sealed: it answered Seal, or a Check after it says so.
	Sealed bool
	// Err says why it did not answer Seal.
	Err error
}

// Seal has every Keeper forget the keyring and stay sealed until the next
// unseal, and returns each Keeper's outcome; one not confirmed sealed may
// still hold the keyring. The error is Unavailable only when no Keeper was
// reached (nothing happened) and Unknown when none confirmed but some may
// have received the request.
func (c *Client) Seal(ctx context.Context) ([]SealResult, error) {
	errs := c.each(ctx, sealTimeout, func(ctx context.Context, _ int, k Endpoint) error {
		_, err := k.RPC.Seal(ctx, connect.NewRequest(&keeperv1.SealRequest{}))
		return err
	})
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sealTimeout)
	st := c.Check(cctx)
	cancel()
	results := make([]SealResult, len(c.keepers))
	var failed []error
	confirmed, maybeSent := 0, false
	for i, k := range c.keepers {
		r := SealResult{Name: k.Name, Err: errs[i]}
		r.Sealed = errs[i] == nil || (i < len(st.Keepers) && st.Keepers[i].Err == nil && st.Keepers[i].SealedOnPurpose)
		if r.Sealed {
			confirmed++
		}
		if errs[i] != nil {
			failed = append(failed, fmt.Errorf("%s: %w", k.Name, errs[i]))
			maybeSent = maybeSent || errors.As(errs[i], new(*rpcclient.MaybeSentError))
		}
		results[i] = r
	}
	switch {
	case confirmed == 0 && maybeSent:
		return results, fault.Wrap(fault.Unknown, errors.Join(failed...), "no Keeper confirmed the seal: some may have sealed; look with spike operator status")
	case confirmed == 0:
		return results, fault.Wrap(fault.Unavailable, errors.Join(failed...), "no Keeper could be reached: nothing was sealed")
	case confirmed < len(c.keepers):
		c.log.Warn("sealed, but some Keepers did not confirm and may still hold the root key", "unconfirmed", len(c.keepers)-confirmed, "error", errors.Join(failed...))
	}
	return results, nil
}

// errSkipped marks a Keeper that each did not ask.
var errSkipped = errors.New("not asked")

// each calls f on every Keeper at once, each bounded by timeout, and
// returns their errors in order.
func (c *Client) each(ctx context.Context, timeout time.Duration, f func(context.Context, int, Endpoint) error) []error {
	errs := make([]error, len(c.keepers))
	var wg sync.WaitGroup
	for i, k := range c.keepers {
		wg.Go(func() {
			kctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			errs[i] = f(kctx, i, k)
		})
	}
	wg.Wait()
	return errs
}

// firstVerdict turns the answers of every Keeper to one question into one
// result: success when any succeeded, else the most telling refusal (a
// Keeper's verdict before "unreachable").
func (c *Client) firstVerdict(op string, errs []error) error {
	var unreachable error
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	for _, err := range errs {
		if errors.Is(err, errSkipped) {
			continue
		}
		if !failover(err) {
			return c.translate(op, err)
		}
		if unreachable == nil {
			unreachable = err
		}
	}
	return c.translate(op, unreachable)
}

// GenerateDataKey has a Keeper make a new data key named id. The caller
// owns (and should clear) the plaintext.
func (c *Client) GenerateDataKey(ctx context.Context, id []byte) (DataKey, error) {
	var dk DataKey
	minEpoch := c.floor(c.State().KeyringID)
	err := c.call(ctx, "generate data key", func(ctx context.Context, rpc keeperv1connect.KeeperServiceClient) error {
		resp, err := rpc.GenerateDataKey(ctx, connect.NewRequest(&keeperv1.GenerateDataKeyRequest{DekId: id, MinEpoch: minEpoch}))
		if err != nil {
			return err
		}
		dk = DataKey{
			Plaintext:      resp.Msg.GetPlaintext(),
			Wrapped:        resp.Msg.GetWrapped(),
			RootKeyVersion: resp.Msg.GetRootKeyVersion(),
			Epoch:          resp.Msg.GetEpoch(),
		}
		return nil
	})
	return dk, err
}

// DecryptDataKey has a Keeper unwrap the data key id. The caller owns (and
// should clear) the plaintext.
func (c *Client) DecryptDataKey(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, error) {
	var plaintext []byte
	err := c.call(ctx, "unwrap data key "+hex.EncodeToString(id), func(ctx context.Context, rpc keeperv1connect.KeeperServiceClient) error {
		resp, err := rpc.DecryptDataKey(ctx, connect.NewRequest(&keeperv1.DecryptDataKeyRequest{
			DekId:          id,
			Wrapped:        wrapped,
			RootKeyVersion: rootKeyVersion,
		}))
		if err != nil {
			return err
		}
		plaintext = resp.Msg.GetPlaintext()
		return nil
	})
	return plaintext, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
