package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
)

// Rotate returns the stored keyring with a new random root key version,
// at the next epoch, under the same keyring key and slots. Keeper keeps
// serving from the keyring it holds until Nexus has stored the result and
// sends it back with Advance.
func (s *Server) Rotate(ctx context.Context, req *connect.Request[keeperv1.RotateRequest]) (*connect.Response[keeperv1.RotateResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	cur, done, err := s.storedUnlocked(ctx, req.Msg.GetKeyring())
	if err != nil {
		return nil, err
	}
	next, err := cur.Rotate()
	done()
	if err != nil {
		return nil, s.internal(ctx, "rotate", err)
	}
	defer next.Drop()
	m, err := s.sealedMsg(ctx, next)
	if err != nil {
		return nil, err
	}
	ring := next.Keyring()
	s.log.InfoContext(ctx, "root key rotated (not yet stored)", slog.String("keyring_id", hex.EncodeToString(m.GetKeyringId())),
		slog.Uint64("epoch", next.Epoch()), slog.Uint64("active_key_version", uint64(ring.ActiveVersion())))
	return connect.NewResponse(&keeperv1.RotateResponse{Keyring: m,
		ActiveKeyVersion: ring.ActiveVersion(), OldestKeyVersion: ring.OldestVersion()}), nil
}

// DestroyRootKeys returns the stored keyring without the root key versions
// below below_version, at the next epoch. Like Rotate, it changes nothing
// here until Advance.
func (s *Server) DestroyRootKeys(ctx context.Context, req *connect.Request[keeperv1.DestroyRootKeysRequest]) (*connect.Response[keeperv1.DestroyRootKeysResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	cur, done, err := s.storedUnlocked(ctx, req.Msg.GetKeyring())
	if err != nil {
		return nil, err
	}
	next, err := cur.DestroyBelow(req.Msg.GetBelowVersion())
	done()
	if errors.Is(err, keyring.ErrInvalidVersion) {
		return nil, invalid("below_version: " + err.Error())
	}
	if err != nil {
		return nil, s.internal(ctx, "destroy root keys", err)
	}
	defer next.Drop()
	m, err := s.sealedMsg(ctx, next)
	if err != nil {
		return nil, err
	}
	ring := next.Keyring()
	s.log.InfoContext(ctx, "old root key versions destroyed (not yet stored)", slog.String("keyring_id", hex.EncodeToString(m.GetKeyringId())),
		slog.Uint64("epoch", next.Epoch()), slog.Uint64("oldest_key_version", uint64(ring.OldestVersion())))
	return connect.NewResponse(&keeperv1.DestroyRootKeysResponse{Keyring: m,
		ActiveKeyVersion: ring.ActiveVersion(), OldestKeyVersion: ring.OldestVersion()}), nil
}

// sealedMsg is u's sealed form as Nexus stores it.
func (s *Server) sealedMsg(ctx context.Context, u *keyring.Unlocked) (*keeperv1.SealedKeyring, error) {
	b, err := u.Sealed().MarshalBinary()
	if err != nil {
		return nil, s.internal(ctx, "encode sealed keyring", err)
	}
	return &keeperv1.SealedKeyring{KeyringId: u.Sealed().ID(), Sealed: b, Epoch: u.Epoch()}, nil
}

// storedUnlocked returns the stored keyring m unlocked with the keyring key
// held, for Rotate and DestroyRootKeys: the one held when it is the same
// sealed form, otherwise m opened with the held keyring key (a newer epoch
// that this Keeper has not advanced to yet). done releases it.
func (s *Server) storedUnlocked(ctx context.Context, m *keeperv1.SealedKeyring) (*keyring.Unlocked, func(), error) {
	st, err := parseStored(m)
	if err != nil {
		return nil, nil, err
	}
	if st.v2 == nil {
		return nil, nil, invalid("keyring: stored in format 1, which cannot rotate: rekey it once (spike operator rekey), then rotate")
	}
	if err := s.checkEpoch(ctx, st); err != nil {
		return nil, nil, err
	}
	s.mu.RLock()
	h := s.held
	switch {
	case h == nil:
		s.mu.RUnlock()
		return nil, nil, sealedErr()
	case !bytesEqual(h.id(), st.id):
		s.mu.RUnlock()
		return nil, nil, heldOther()
	case h.u == nil:
		s.mu.RUnlock()
		return nil, nil, staleErr("holding the keyring without its keyring key (format 1)")
	case st.epoch() < h.epoch():
		s.mu.RUnlock()
		return nil, nil, corruptKeyring(fmt.Sprintf("keyring: epoch %d is older than epoch %d, held: the stored keyring was rolled back", st.epoch(), h.epoch()))
	}
	if same, err := h.u.Sealed().MarshalBinary(); err == nil && st.epoch() == h.epoch() && bytes.Equal(same, m.GetSealed()) {
		return h.u, s.mu.RUnlock, nil
	}
	u, err := h.u.Reopen(st.v2)
	s.mu.RUnlock()
	if err != nil {
		return nil, nil, s.reopenErr(ctx, st, err)
	}
	return u, u.Drop, nil
}

// reopenErr is the refusal of a stored keyring that the held keyring key
// does not open: a rekey replaced the keyring key (this Keeper is stale),
// or the stored one was altered.
func (s *Server) reopenErr(ctx context.Context, st stored, err error) error {
	if errors.Is(err, keyring.ErrTampered) {
		s.wantNewer(ctx, st.epoch())
		return staleErr(fmt.Sprintf("the keyring key held does not open epoch %d (rekeyed since, or altered)", st.epoch()))
	}
	return corruptKeyring("keyring: " + err.Error())
}

// Advance holds the stored keyring m, a newer epoch of the keyring held,
// opened with the keyring key held. An epoch not above the held one changes
// nothing.
func (s *Server) Advance(ctx context.Context, req *connect.Request[keeperv1.AdvanceRequest]) (*connect.Response[keeperv1.AdvanceResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	st, err := parseStored(req.Msg.GetKeyring())
	if err != nil {
		return nil, err
	}
	if st.v2 == nil {
		return nil, invalid("keyring: a format 1 keyring has no epochs to advance to")
	}
	if err := s.checkEpoch(ctx, st); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h := s.held
	switch {
	case h == nil:
		s.mu.Unlock()
		return nil, sealedErr()
	case !bytesEqual(h.id(), st.id):
		s.mu.Unlock()
		return nil, heldOther()
	case st.epoch() > h.epoch() && h.u == nil:
		s.mu.Unlock()
		s.wantNewer(ctx, st.epoch())
		return nil, staleErr("holding the keyring without its keyring key (format 1)")
	case st.epoch() > h.epoch():
		next, err := h.u.Advance(st.v2)
		if err != nil {
			s.mu.Unlock()
			return nil, s.reopenErr(ctx, st, err)
		}
		h.drop()
		h = holdingOf(next)
		s.held, s.newer = h, false
		s.raiseFloor(st.id, st.epoch())
		s.log.InfoContext(ctx, "keeper advanced to a new epoch of the keyring",
			slog.String("keyring_id", hex.EncodeToString(st.id)), slog.Uint64("epoch", h.epoch()),
			slog.Uint64("active_key_version", uint64(h.ring.ActiveVersion())), slog.Uint64("oldest_key_version", uint64(h.ring.OldestVersion())))
	}
	resp := &keeperv1.AdvanceResponse{Epoch: h.epoch(), ActiveKeyVersion: h.ring.ActiveVersion(), OldestKeyVersion: h.ring.OldestVersion()}
	s.mu.Unlock()
	return connect.NewResponse(resp), nil
}

// RewrapDataKey unwraps a data key and wraps it again under the active
// root key version.
func (s *Server) RewrapDataKey(ctx context.Context, req *connect.Request[keeperv1.RewrapDataKeyRequest]) (*connect.Response[keeperv1.RewrapDataKeyResponse], error) {
	dekID := req.Msg.GetDekId()
	h, release, err := s.dataKeyRing(ctx, dekID)
	if err != nil {
		return nil, err
	}
	version := req.Msg.GetRootKeyVersion()
	wrapped, active, err := h.ring.RewrapDataKey(dekID, req.Msg.GetWrapped(), version)
	held := h.versions()
	release()
	if err != nil {
		return nil, s.unwrapErr(ctx, held, dekID, version, err)
	}
	return connect.NewResponse(&keeperv1.RewrapDataKeyResponse{Wrapped: wrapped, RootKeyVersion: active}), nil
}
