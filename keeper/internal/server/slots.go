package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
)

// Init generates a keyring and returns it sealed (format 2) with a
// password slot, a shares slot or both, and the shares. Keeper's state
// does not change.
func (s *Server) Init(ctx context.Context, req *connect.Request[keeperv1.InitRequest]) (*connect.Response[keeperv1.InitResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	password := req.Msg.GetPassword()
	defer clear(password)
	spec, err := shareSpec("share", req.Msg.GetShareThreshold(), req.Msg.GetShareCount())
	if err != nil {
		return nil, err
	}
	if err := s.checkNewCredentials(password, spec, "password"); err != nil {
		return nil, err
	}
	params, err := keyring.NewParams(s.kdf.Time, s.kdf.MemoryKiB, s.kdf.Threads)
	if err != nil {
		return nil, s.internal(ctx, "new kdf params", err)
	}
	if err := s.acquireKDF(ctx); err != nil {
		return nil, err
	}
	u, shares, err := keyring.Create(password, params, spec)
	s.releaseKDF()
	if err != nil {
		return nil, s.internal(ctx, "create keyring", err)
	}
	defer u.Drop()
	resp, err := s.sealedResponse(ctx, u, shares)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "keyring generated", slog.String("keyring_id", hex.EncodeToString(u.Sealed().ID())),
		slog.Bool("password", len(password) > 0), slog.Int("share_threshold", spec.K), slog.Int("share_count", spec.N))
	return connect.NewResponse(&keeperv1.InitResponse{Keyring: resp.keyring, Shares: resp.shares}), nil
}

// Unseal opens the sealed keyring with the password or the shares and
// holds it. Unsealing again with the same keyring succeeds and changes
// nothing; another keyring is refused while one is held. Wrong credentials
// change nothing.
func (s *Server) Unseal(ctx context.Context, req *connect.Request[keeperv1.UnsealRequest]) (*connect.Response[keeperv1.UnsealResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	creds, err := parseCredentials(req.Msg.GetPassword(), req.Msg.GetShares())
	if err != nil {
		return nil, err
	}
	defer creds.drop()
	stored, err := parseStored(req.Msg.GetKeyring())
	if err != nil {
		return nil, err
	}
	if err := s.checkHeld(stored.id); err != nil {
		return nil, err
	}
	if err := s.checkEpoch(ctx, stored); err != nil {
		return nil, err
	}
	s.mu.RLock()
	gen := s.sealGen
	s.mu.RUnlock()
	if err := s.acquireKDF(ctx); err != nil {
		return nil, err
	}
	var h *holding
	if stored.v2 != nil {
		var u *keyring.Unlocked
		if u, err = creds.open(stored.v2); err == nil {
			h = holdingOf(u)
		}
	} else {
		var ring *keyring.Keyring
		if ring, err = creds.openV1(stored.msg); err == nil {
			h = &holding{ring: ring}
		}
	}
	s.releaseKDF()
	if err != nil {
		return nil, s.refuseOpen(ctx, stored.id, creds, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealGen != gen {
		h.drop()
		return nil, keeperError(keeperv1.ErrorDetail_REASON_SEALED, "keeper was sealed while this unseal ran: unseal again")
	}
	s.onPurpose = false
	s.raiseFloor(stored.id, stored.epoch())
	switch {
	case s.held == nil || h.supersedes(s.held):
		// Nothing held, or an older epoch of this keyring (a rekey or a
		// rotation this Keeper missed): hold the one just opened.
		if s.held != nil {
			s.held.drop()
		}
		s.held, s.source, s.newer = h, "unseal", false
		s.log.InfoContext(ctx, "keeper unsealed",
			slog.String("keyring_id", hex.EncodeToString(stored.id)),
			slog.String("with", creds.kind()), slog.Uint64("epoch", h.epoch()),
			slog.Uint64("active_key_version", uint64(h.ring.ActiveVersion())))
	case bytesEqual(s.held.id(), h.id()):
		h.drop() // the same keyring, held already at this epoch or a newer one
	default:
		h.drop()
		return nil, heldOther()
	}
	return connect.NewResponse(&keeperv1.UnsealResponse{KeyringId: s.held.id()}), nil
}

// Rekey opens the stored keyring with the current credentials and seals
// its root keys again under a new keyring key with exactly the new slots,
// at the next epoch: the old password and shares open only the old sealed
// keyring. A keyring still in format 1 is upgraded on the way. Keeper's
// state does not change, so a Keeper that got its keyring from a peer
// rekeys like any other.
func (s *Server) Rekey(ctx context.Context, req *connect.Request[keeperv1.RekeyRequest]) (*connect.Response[keeperv1.RekeyResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	m := req.Msg
	newPassword := m.GetNewPassword()
	defer clear(newPassword)
	spec, err := shareSpec("new_share", m.GetNewShareThreshold(), m.GetNewShareCount())
	if err != nil {
		return nil, err
	}
	if err := s.checkNewCredentials(newPassword, spec, "new_password"); err != nil {
		return nil, err
	}
	creds, err := parseCredentials(m.GetPassword(), m.GetShares())
	if err != nil {
		return nil, err
	}
	defer creds.drop()
	stored, err := parseStored(m.GetKeyring())
	if err != nil {
		return nil, err
	}
	if err := s.checkHeld(stored.id); err != nil {
		return nil, err
	}
	if err := s.checkEpoch(ctx, stored); err != nil {
		return nil, err
	}
	params, err := keyring.NewParams(s.kdf.Time, s.kdf.MemoryKiB, s.kdf.Threads)
	if err != nil {
		return nil, s.internal(ctx, "new kdf params", err)
	}
	if err := s.acquireKDF(ctx); err != nil {
		return nil, err
	}
	var u *keyring.Unlocked
	if stored.v2 != nil {
		u, err = creds.open(stored.v2)
	} else {
		u, err = creds.upgradeV1(stored.msg, params)
	}
	if err != nil {
		s.releaseKDF()
		return nil, s.refuseOpen(ctx, stored.id, creds, err)
	}
	defer u.Drop()
	next, shares, err := u.Rekey(newPassword, params, spec)
	s.releaseKDF()
	if err != nil {
		return nil, s.internal(ctx, "rekey", err)
	}
	defer next.Drop()
	resp, err := s.sealedResponse(ctx, next, shares)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "keyring rekeyed", slog.String("keyring_id", hex.EncodeToString(stored.id)),
		slog.String("with", creds.kind()), slog.Uint64("epoch", next.Epoch()),
		slog.Bool("password", len(newPassword) > 0), slog.Int("share_threshold", spec.K), slog.Int("share_count", spec.N))
	return connect.NewResponse(&keeperv1.RekeyResponse{Keyring: resp.keyring, Shares: resp.shares}), nil
}

// sealed is a sealed keyring and shares as sent to Nexus.
type sealed struct {
	keyring *keeperv1.SealedKeyring
	shares  [][]byte
}

// sealedResponse encodes u's sealed form and the shares' text forms,
// dropping the shares.
func (s *Server) sealedResponse(ctx context.Context, u *keyring.Unlocked, shares []keyring.Share) (sealed, error) {
	defer func() {
		for i := range shares {
			shares[i].Drop()
		}
	}()
	b, err := u.Sealed().MarshalBinary()
	if err != nil {
		return sealed{}, s.internal(ctx, "encode sealed keyring", err)
	}
	out := sealed{keyring: &keeperv1.SealedKeyring{KeyringId: u.Sealed().ID(), Sealed: b, Epoch: u.Epoch()}}
	for i := range shares {
		text, err := shares[i].MarshalText()
		if err != nil {
			return sealed{}, s.internal(ctx, "encode share", err)
		}
		out.shares = append(out.shares, text)
	}
	return out, nil
}

// checkNewCredentials refuses new credentials that are none at all (field
// names the password field), or a password too weak to set.
func (s *Server) checkNewCredentials(password []byte, spec keyring.ShareSpec, field string) error {
	if len(password) == 0 {
		if spec.IsZero() {
			return invalid(field + " or shares are required")
		}
		return nil
	}
	return s.checkNewPassword(password)
}

// shareSpec reads a requested split from the fields prefix_threshold and
// prefix_count: both 0 asks for none.
func shareSpec(prefix string, k, n uint32) (keyring.ShareSpec, error) {
	if k == 0 && n == 0 {
		return keyring.ShareSpec{}, nil
	}
	if k < 1 || k > n || n > keyring.MaxShares {
		return keyring.ShareSpec{}, invalid(fmt.Sprintf("%[1]s_threshold and %[1]s_count: want 1 ≤ threshold ≤ count ≤ %d, got %d of %d", prefix, keyring.MaxShares, k, n))
	}
	return keyring.ShareSpec{K: int(k), N: int(n)}, nil
}

// credentials are the password or the shares of an Unseal or Rekey
// request: exactly one of the two.
type credentials struct {
	password []byte
	shares   []keyring.Share
}

// parseCredentials checks and parses a request's current credentials. A
// share that does not parse is refused with its problem, never its value.
func parseCredentials(password []byte, texts [][]byte) (credentials, error) {
	defer func() {
		for _, t := range texts {
			clear(t)
		}
	}()
	switch {
	case len(password) > 0 && len(texts) > 0:
		clear(password)
		return credentials{}, invalid("give the password or shares, not both")
	case len(texts) > keyring.MaxShares:
		return credentials{}, invalid(fmt.Sprintf("shares: at most %d", keyring.MaxShares))
	case len(texts) > 0:
		c := credentials{shares: make([]keyring.Share, 0, len(texts))}
		for _, t := range texts {
			sh, err := keyring.ParseShare(t)
			if err != nil {
				c.drop()
				return credentials{}, invalid("shares: " + err.Error())
			}
			c.shares = append(c.shares, sh)
		}
		return c, nil
	}
	if err := checkPassword(password); err != nil {
		clear(password)
		return credentials{}, err
	}
	return credentials{password: password}, nil
}

// kind names the credentials for logs.
func (c credentials) kind() string {
	if c.shares != nil {
		return "shares"
	}
	return "password"
}

// drop zeroes the credentials.
func (c credentials) drop() {
	clear(c.password)
	for i := range c.shares {
		c.shares[i].Drop()
	}
}

// open opens a format 2 keyring with the credentials.
func (c credentials) open(s *keyring.Sealed) (*keyring.Unlocked, error) {
	if c.shares != nil {
		return keyring.OpenWithShares(s, c.shares)
	}
	return keyring.OpenWithPassword(s, c.password)
}

// errPasswordOnly refuses shares for a format 1 keyring, which has only a
// password.
var errPasswordOnly = fmt.Errorf("%w: the keyring was sealed before shares existed and opens only with the password", keyring.ErrNoSlot)

// openV1 opens a format 1 keyring with the password.
func (c credentials) openV1(m *keeperv1.SealedKeyring) (*keyring.Keyring, error) {
	if c.shares != nil {
		return nil, errPasswordOnly
	}
	return keyring.Open(m.GetKeyringId(), m.GetKdfParams(), m.GetCiphertext(), c.password)
}

// upgradeV1 opens a format 1 keyring with the password, in format 2.
func (c credentials) upgradeV1(m *keeperv1.SealedKeyring, params keyring.Params) (*keyring.Unlocked, error) {
	if c.shares != nil {
		return nil, errPasswordOnly
	}
	return keyring.UpgradeV1(m.GetKeyringId(), m.GetKdfParams(), m.GetCiphertext(), c.password, params)
}

// stored is a sealed keyring from storage, checked before any derivation.
type stored struct {
	msg *keeperv1.SealedKeyring
	id  []byte
	v2  *keyring.Sealed // nil in format 1
}

// epoch is the stored keyring's epoch: 0 in format 1.
func (st stored) epoch() uint64 {
	if st.v2 == nil {
		return 0
	}
	return st.v2.Epoch()
}

// checkEpoch refuses a stored keyring older than one Keeper has seen: the
// database was rolled back, perhaps to bring back replaced credentials.
func (s *Server) checkEpoch(ctx context.Context, st stored) error {
	s.mu.RLock()
	floor := s.minEpoch
	if !bytesEqual(s.floorID, st.id) {
		floor = 0 // a floor is per keyring
	}
	s.mu.RUnlock()
	if st.epoch() >= floor {
		return nil
	}
	s.log.WarnContext(ctx, "stored keyring refused: older than one seen before (rolled back?)",
		slog.String("keyring_id", hex.EncodeToString(st.id)), slog.Uint64("epoch", st.epoch()), slog.Uint64("min_epoch", floor))
	return corruptKeyring(fmt.Sprintf("keyring: epoch %d is older than epoch %d, seen before: the stored keyring was rolled back", st.epoch(), floor))
}

// parseStored checks a sealed keyring from storage. It comes from storage
// that Keeper does not trust: a malformed one was damaged there, it is not
// a malformed request.
func parseStored(m *keeperv1.SealedKeyring) (stored, error) {
	if m == nil {
		return stored{}, invalid("keyring is required")
	}
	st := stored{msg: m, id: m.GetKeyringId()}
	if len(st.id) != keyring.IDSize {
		return stored{}, corruptKeyring("keyring.keyring_id must be 16 bytes")
	}
	if len(m.GetSealed()) == 0 {
		var params keyring.Params
		if err := params.UnmarshalBinary(m.GetKdfParams()); err != nil {
			return stored{}, corruptKeyring("keyring.kdf_params: " + err.Error())
		}
		return st, nil
	}
	if len(m.GetKdfParams()) != 0 || len(m.GetCiphertext()) != 0 {
		return stored{}, corruptKeyring("keyring: both format 1 and format 2 fields are set")
	}
	st.v2 = &keyring.Sealed{}
	if err := st.v2.UnmarshalBinary(m.GetSealed()); err != nil {
		return stored{}, corruptKeyring("keyring.sealed: " + err.Error())
	}
	if !bytesEqual(st.v2.ID(), st.id) {
		return stored{}, corruptKeyring("keyring.sealed is of another keyring than keyring.keyring_id")
	}
	return st, nil
}

// refuseOpen maps a failure to open a stored keyring with creds to its
// refusal, logging it.
func (s *Server) refuseOpen(ctx context.Context, id []byte, creds credentials, err error) error {
	log := func(msg string) {
		s.log.WarnContext(ctx, msg, slog.String("keyring_id", hex.EncodeToString(id)),
			slog.String("with", creds.kind()), slog.String("error", err.Error()))
	}
	switch {
	case errors.Is(err, keyring.ErrWrongPassword), errors.Is(err, keyring.ErrWrongCredentials) && creds.shares == nil:
		log("keyring refused: wrong password or altered keyring")
		return keeperError(keeperv1.ErrorDetail_REASON_WRONG_PASSWORD, "wrong password")
	case errors.Is(err, keyring.ErrWrongCredentials):
		log("keyring refused: wrong shares or altered keyring")
		return keeperError(keeperv1.ErrorDetail_REASON_WRONG_SHARES, "wrong shares: they do not recover this keyring's unseal key")
	case errors.Is(err, keyring.ErrNotEnoughShares), errors.Is(err, keyring.ErrInvalidShare):
		return invalid("shares: " + err.Error())
	case errors.Is(err, keyring.ErrNoSlot):
		if errors.Is(err, errPasswordOnly) {
			return invalid(err.Error())
		}
		if creds.shares != nil {
			return invalid("the keyring has no shares slot: use the password")
		}
		return invalid("the keyring has no password slot: use the shares")
	case errors.Is(err, keyring.ErrTampered):
		log("keyring refused: altered")
		return corruptKeyring("keyring: the slot opened but the root keys do not authenticate (altered, or parts of different keyrings)")
	case errors.Is(err, keyring.ErrMalformed), errors.Is(err, keyring.ErrInvalidParams):
		log("keyring refused: malformed")
		return corruptKeyring("keyring: " + err.Error())
	}
	return s.internal(ctx, "open keyring", err)
}

// raiseFloor raises the epoch floor of keyring id to e; a floor of another
// keyring is replaced. The caller holds s.mu.
func (s *Server) raiseFloor(id []byte, e uint64) {
	if len(id) == 0 {
		return
	}
	if !bytesEqual(s.floorID, id) {
		if s.held != nil && bytesEqual(s.floorID, s.held.id()) {
			return // the floor of the keyring held stays, whatever is claimed
		}
		s.floorID, s.minEpoch = append([]byte(nil), id...), e
		return
	}
	s.minEpoch = max(s.minEpoch, e)
}
