package server

import (
	"context"
	"encoding/hex"
	"errors"
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
	switch {
	case s.ring == nil || s.onPurpose:
		return nil, sealedErr()
	case len(want) != 0 && !bytesEqual(s.ring.ID(), want):
		return nil, heldOther()
	}
	sealed, err := s.ring.Share(req.Msg.GetPublicKey())
	if err != nil {
		return nil, invalid("public_key: not an HPKE public key of the expected suite")
	}
	s.log.InfoContext(ctx, "keyring given to peer",
		slog.String("peer", caller), slog.String("keyring_id", hex.EncodeToString(s.ring.ID())))
	return connect.NewResponse(&keeperv1.FetchKeyringResponse{KeyringId: s.ring.ID(), Sealed: sealed}), nil
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

// needsKeyring reports whether the re-seed loop should ask peers.
func (s *Server) needsKeyring() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ring == nil && !s.onPurpose
}

// reseedOnce asks the peers, in random order, until one gives a keyring,
// and holds it. It reports which peer gave it.
func (s *Server) reseedOnce(ctx context.Context, peers []Peer) (string, bool) {
	s.mu.RLock()
	want := append([]byte(nil), s.wanted...)
	s.mu.RUnlock()
	for _, i := range rand.Perm(len(peers)) { //nolint:gosec // the order only spreads the load among peers
		p := peers[i]
		ring, err := s.fetch(ctx, p, want)
		if err != nil {
			s.peerFailed(ctx, p.Name, err)
			continue
		}
		if s.hold(ring, "peer "+p.Name) {
			return p.Name, true
		}
		ring.Drop()
		return "", false
	}
	return "", false
}

// peerFailed logs why a peer gave no keyring: at debug level when it has
// none to give (sealed, or another keyring), as a warning otherwise (a
// peer that cannot be reached or refuses this Keeper is misconfigured),
// once per peer until its answer changes.
func (s *Server) peerFailed(ctx context.Context, peer string, err error) {
	level := slog.LevelWarn
	if r := reasonOf(err); r == keeperv1.ErrorDetail_REASON_SEALED || r == keeperv1.ErrorDetail_REASON_KEYRING_MISMATCH {
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

// fetch asks one peer for the keyring want (nil: any), sealed to a key
// pair made for this one request, and opens it.
func (s *Server) fetch(ctx context.Context, p Peer, want []byte) (*keyring.Keyring, error) {
	req, err := keyring.NewShareRequest()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	resp, err := p.Client.FetchKeyring(ctx, connect.NewRequest(&keeperv1.FetchKeyringRequest{
		KeyringId: want,
		PublicKey: req.PublicKey(),
	}))
	if err != nil {
		return nil, err
	}
	id := resp.Msg.GetKeyringId()
	if len(want) != 0 && !bytesEqual(id, want) {
		return nil, errors.New("peer gave another keyring than the one asked for")
	}
	return req.Open(id, resp.Msg.GetSealed())
}

// hold installs a keyring from a peer unless, meanwhile, Keeper got one or
// was sealed on purpose. It reports whether ring is now held.
func (s *Server) hold(ring *keyring.Keyring, source string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ring != nil || s.onPurpose {
		return false
	}
	if len(s.wanted) != 0 && !bytesEqual(ring.ID(), s.wanted) {
		return false
	}
	s.ring, s.source = ring, source
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
