package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
)

var _ keeperv1connect.PeerServiceHandler = (*Server)(nil)

// PeerHandler returns the HTTP path and handler that serve PeerService to
// other Keepers.
func (s *Server) PeerHandler() (string, http.Handler) {
	return keeperv1connect.NewPeerServiceHandler(s,
		connect.WithReadMaxBytes(maxRequestBytes),
		connect.WithCompression("gzip", nil, nil),
		connect.WithInterceptors(observeRequests(s.log, s.metrics)),
	)
}

// authorizePeer admits only Keepers of the trust domain.
func (s *Server) authorizePeer(ctx context.Context) (string, error) {
	id, ok := mtls.Caller(ctx)
	if !ok || !identity.IsKeeper(s.td, id) {
		return "", connect.NewError(connect.CodePermissionDenied, errors.New("caller is not a keeper"))
	}
	return id.String(), nil
}

// FetchKeyring gives the keyring this Keeper holds to a peer Keeper, sealed
// to the public key of its request.
func (s *Server) FetchKeyring(ctx context.Context, req *connect.Request[keeperv1.FetchKeyringRequest]) (*connect.Response[keeperv1.FetchKeyringResponse], error) {
	caller, err := s.authorizePeer(ctx)
	if err != nil {
		return nil, err
	}
	want := req.Msg.GetKeyringId()
	if len(want) != 0 && len(want) != keyring.IDSize {
		return nil, invalid("keyring_id must be empty or 16 bytes")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.held
	switch {
	case h == nil || s.onPurpose:
		return nil, sealedErr()
	case len(want) != 0 && !bytesEqual(h.id(), want):
		return nil, heldOther()
	case h.epoch() < req.Msg.GetMinEpoch():
		return nil, staleErr(fmt.Sprintf("holding epoch %d, below the %d asked for", h.epoch(), req.Msg.GetMinEpoch()))
	}
	var sealed []byte
	if h.u != nil {
		sealed, err = h.u.Share(req.Msg.GetPublicKey())
	} else {
		sealed, err = h.ring.Share(req.Msg.GetPublicKey())
	}
	if err != nil {
		return nil, invalid("public_key: not an HPKE public key of the expected suite")
	}
	s.log.InfoContext(ctx, "keyring given to peer",
		slog.String("peer", caller), slog.String("keyring_id", hex.EncodeToString(h.id())), slog.Uint64("epoch", h.epoch()))
	return connect.NewResponse(&keeperv1.FetchKeyringResponse{KeyringId: h.id(), Sealed: sealed}), nil
}

// Peer is another Keeper this one may ask for the keyring.
type Peer struct {
	// Name identifies the peer in logs (its URL).
	Name string
	// Client calls its PeerService; its TLS configuration must admit only
	// Keeper IDs.
	Client keeperv1connect.PeerServiceClient
}

// peerTimeout bounds one question to one peer.
const peerTimeout = 2 * time.Second

// Reseed asks peers for the keyring whenever this Keeper holds none and was
// not sealed on purpose: at once when it starts, when Nexus names the
// keyring it expects (Status), and every interval otherwise. It returns
// when ctx is done.
func (s *Server) Reseed(ctx context.Context, peers []Peer, interval time.Duration) {
	if len(peers) == 0 {
		return
	}
	started := time.Now()
	s.wakeReseed()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reseed:
		}
		if !s.needsKeyring() {
			continue
		}
		if peer, ok := s.reseedOnce(ctx, peers); ok {
			s.log.InfoContext(ctx, "keeper re-seeded from a peer",
				slog.String("peer", peer), slog.Duration("since_start", time.Since(started)))
		}
	}
}

// wakeReseed makes the re-seed loop look at once.
func (s *Server) wakeReseed() {
	select {
	case s.reseed <- struct{}{}:
	default:
	}
}

// needsKeyring reports whether the re-seed loop should ask peers: Keeper
// holds no keyring, or an older epoch than one it has learnt of.
func (s *Server) needsKeyring() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.onPurpose && (s.held == nil || s.staleLocked())
}

// staleLocked reports whether a newer epoch of the held keyring is known
// to exist. The caller holds s.mu.
func (s *Server) staleLocked() bool {
	return s.held != nil && (s.newer || bytesEqual(s.floorID, s.held.id()) && s.minEpoch > s.held.epoch())
}

// wanted returns what the re-seed loop asks peers for: the keyring id (nil:
// any) and the lowest epoch.
func (s *Server) wantedKeyring() ([]byte, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.held != nil {
		floor := s.held.epoch() + 1
		if bytesEqual(s.floorID, s.held.id()) {
			floor = max(floor, s.minEpoch)
		}
		return s.held.id(), floor
	}
	want := append([]byte(nil), s.wanted...)
	var floor uint64
	if len(want) != 0 && bytesEqual(s.floorID, want) {
		floor = s.minEpoch
	}
	return want, floor
}

// wantEpoch records that Nexus has seen epoch epoch of the held keyring
// committed: Keeper refuses older stored copies from now on, and asks its
// peers for that epoch.
func (s *Server) wantEpoch(ctx context.Context, epoch uint64) {
	s.mu.Lock()
	if s.held != nil {
		s.raiseFloor(s.held.id(), epoch)
	}
	s.mu.Unlock()
	s.wantNewer(ctx, epoch)
}

// wantNewer records that a newer epoch than the held one may exist (epoch
// is its lowest possible one; it may be inferred from a root key version
// the keyring lacks, which the database names, so it raises no floor), and
// wakes the re-seed loop to fetch it. A round of the loop in which no peer
// has a newer one clears it.
func (s *Server) wantNewer(ctx context.Context, epoch uint64) {
	s.mu.Lock()
	if s.held != nil && !s.newer {
		s.newer = true
		s.log.InfoContext(ctx, "a newer epoch of the keyring exists; asking peers for it",
			slog.Uint64("epoch", s.held.epoch()), slog.Uint64("wanted", epoch))
	}
	s.mu.Unlock()
	s.wakeReseed()
}

// reseedOnce asks the peers, in random order, until one gives a keyring,
// and holds it. It reports which peer gave it.
func (s *Server) reseedOnce(ctx context.Context, peers []Peer) (string, bool) {
	want, minEpoch := s.wantedKeyring()
	for _, i := range rand.Perm(len(peers)) { //nolint:gosec // the order only spreads the load among peers
		p := peers[i]
		h, err := s.fetch(ctx, p, want, minEpoch)
		if err != nil {
			s.peerFailed(ctx, p.Name, err)
			continue
		}
		if s.hold(h, "peer "+p.Name) {
			return p.Name, true
		}
		h.drop()
		return "", false
	}
	s.mu.Lock()
	s.newer = false // no peer has a newer epoch: a hint, not a floor
	s.mu.Unlock()
	return "", false
}

// peerFailed logs why a peer gave no keyring: at debug level when it has
// none to give (sealed, or another keyring), as a warning otherwise (a
// peer that cannot be reached or refuses this Keeper is misconfigured),
// once per peer until its answer changes.
func (s *Server) peerFailed(ctx context.Context, peer string, err error) {
	level := slog.LevelWarn
	if r := reasonOf(err); r == keeperv1.ErrorDetail_REASON_SEALED || r == keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH ||
		r == keeperv1.ErrorDetail_REASON_STALE_KEYRING {
		level = slog.LevelDebug
	}
	msg := err.Error()
	s.mu.Lock()
	if s.peerErrs == nil {
		s.peerErrs = map[string]string{}
	}
	repeated := s.peerErrs[peer] == msg
	s.peerErrs[peer] = msg
	s.mu.Unlock()
	if repeated && level == slog.LevelWarn {
		level = slog.LevelDebug
	}
	s.log.Log(ctx, level, "re-seed: peer gave no keyring", slog.String("peer", peer), slog.String("error", msg))
}

// fetch asks one peer for the keyring want (nil: any) at minEpoch or
// newer, sealed to a key pair made for this one request, and opens it: in
// its unlocked form, or as bare root keys from a peer holding a format 1
// keyring.
func (s *Server) fetch(ctx context.Context, p Peer, want []byte, minEpoch uint64) (*holding, error) {
	req, err := keyring.NewShareRequest()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	resp, err := p.Client.FetchKeyring(ctx, connect.NewRequest(&keeperv1.FetchKeyringRequest{
		KeyringId: want,
		PublicKey: req.PublicKey(),
		MinEpoch:  minEpoch,
	}))
	if err != nil {
		return nil, err
	}
	id := resp.Msg.GetKeyringId()
	if len(want) != 0 && !bytesEqual(id, want) {
		return nil, errors.New("peer gave another keyring than the one asked for")
	}
	h := &holding{}
	if h.u, err = req.OpenUnlocked(id, resp.Msg.GetSealed()); err == nil {
		h.ring = h.u.Keyring()
	} else if h.ring, err = req.Open(id, resp.Msg.GetSealed()); err != nil {
		return nil, err
	}
	if h.epoch() < minEpoch {
		h.drop()
		return nil, fmt.Errorf("peer gave epoch %d, below the %d asked for", h.epoch(), minEpoch)
	}
	return h, nil
}

// hold installs a keyring from a peer unless, meanwhile, Keeper was sealed
// on purpose or got the same or a newer one, or the keyring is older than
// the floor. It reports whether h is now held.
func (s *Server) hold(h *holding, source string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onPurpose {
		return false
	}
	if bytesEqual(s.floorID, h.id()) && h.epoch() < s.minEpoch {
		return false
	}
	switch {
	case s.held == nil:
		if len(s.wanted) != 0 && !bytesEqual(h.id(), s.wanted) {
			return false
		}
	case h.supersedes(s.held):
		s.held.drop()
	default:
		return false
	}
	s.held, s.source, s.newer = h, source, false
	return true
}

// reasonOf is the reason a peer gave for refusing, from the error's
// details; REASON_UNSPECIFIED when it gave none.
func reasonOf(err error) keeperv1.ErrorDetail_Reason {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return keeperv1.ErrorDetail_REASON_UNSPECIFIED
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if detail, ok := v.(*keeperv1.ErrorDetail); ok {
				return detail.GetReason()
			}
		}
	}
	return keeperv1.ErrorDetail_REASON_UNSPECIFIED
}
