// Package server is Keeper's Connect API: it holds the unsealed root keyring
// in memory and uses it to wrap and unwrap data keys for Nexus.
package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/keeper/internal/keyring"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
)

// maxRequestBytes bounds the size of a request message. Keeper's requests
// are a password, a sealed keyring or a wrapped data key.
const maxRequestBytes = 64 << 10

// Config configures a Server.
type Config struct {
	// NexusID is the only SPIFFE ID allowed to call KeeperService.
	NexusID spiffeid.ID
	// TrustDomain is where the Keeper IDs allowed to call PeerService are.
	TrustDomain spiffeid.TrustDomain
	// KDF holds the Argon2id cost used to seal new keyrings. Its salt is
	// ignored: Init draws a fresh one every time.
	KDF keyring.Params
	// Logger receives one line per request and state changes; never secrets.
	Logger *slog.Logger
	// Metrics, when not nil, receives Keeper's metrics: requests by
	// procedure and code, and whether it is unsealed.
	Metrics prometheus.Registerer
}

// Server implements keeperv1connect.KeeperServiceHandler.
type Server struct {
	nexusID spiffeid.ID
	td      spiffeid.TrustDomain
	kdf     keyring.Params
	log     *slog.Logger
	metrics *metrics

	// kdfSlot admits one Argon2id derivation at a time, so concurrent Init
	// and Unseal calls cannot multiply its memory cost.
	kdfSlot chan struct{}

	// reseed wakes the peer re-seed loop (peer.go) at once.
	reseed chan struct{}

	mu   sync.RWMutex
	held *holding // nil while sealed
	// source says how held was obtained: "unseal" or "peer <id>".
	source string
	// onPurpose is set by Seal and cleared by Unseal: meanwhile Keeper
	// neither asks its peers for the keyring nor gives it to them.
	onPurpose bool
	// wanted is the keyring id Nexus last said its database stores; the
	// re-seed loop asks peers for it.
	wanted []byte
	// sealGen counts Seals: an Unseal whose key derivation overlapped one
	// does not install its keyring.
	sealGen uint64
	// peerErrs is the last error each peer gave the re-seed loop.
	peerErrs map[string]string
	// minEpoch is the lowest epoch of keyring floorID that Keeper still
	// opens when stored: the highest one Nexus or an unseal has shown it
	// (in memory only, like the keys).
	floorID  []byte
	minEpoch uint64
	// newer is set when a request showed that a newer epoch of the held
	// keyring exists (a root key version it lacks): the re-seed loop asks
	// peers for an epoch above the held one.
	newer bool
}

var _ keeperv1connect.KeeperServiceHandler = (*Server)(nil)

// New returns a sealed Server.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		nexusID: cfg.NexusID,
		kdf:     cfg.KDF,
		log:     log,
		td:      cfg.TrustDomain,
		kdfSlot: make(chan struct{}, 1),
		reseed:  make(chan struct{}, 1),
	}
	s.metrics = newMetrics(cfg.Metrics, s.Unsealed)
	return s
}

// Handler returns the HTTP path and handler that serve s over Connect, with
// the request size limit and request logging applied.
func (s *Server) Handler() (string, http.Handler) {
	return keeperv1connect.NewKeeperServiceHandler(s,
		connect.WithReadMaxBytes(maxRequestBytes),
		// Key material is never compressed (no length side channel).
		connect.WithCompression("gzip", nil, nil),
		connect.WithInterceptors(observeRequests(s.log, s.metrics)),
	)
}

// Unsealed reports whether Keeper holds a keyring.
func (s *Server) Unsealed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.held != nil
}

// Drop forgets the keyring, zeroing its keys. Keeper calls it on shutdown.
func (s *Server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked()
}

func (s *Server) dropLocked() {
	if s.held != nil {
		s.held.drop()
		s.held = nil
		s.source = ""
		s.newer = false
	}
}

// Seal forgets the keyring on Nexus's request and keeps Keeper sealed, not
// re-seeded by its peers, until the next Unseal.
func (s *Server) Seal(ctx context.Context, _ *connect.Request[keeperv1.SealRequest]) (*connect.Response[keeperv1.SealResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.held != nil
	s.dropLocked()
	s.onPurpose = true
	s.sealGen++
	s.log.InfoContext(ctx, "keeper sealed on request", slog.Bool("was_unsealed", held))
	return connect.NewResponse(&keeperv1.SealResponse{WasUnsealed: held}), nil
}

// Status reports whether Keeper holds a keyring, and which. Told which
// keyring Nexus's database stores, a Keeper that holds none (and was not
// sealed on purpose) asks its peers for it at once.
func (s *Server) Status(ctx context.Context, req *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	expected := req.Msg.GetExpectedKeyringId()
	if len(expected) != 0 && len(expected) != keyring.IDSize {
		return nil, invalid("expected_keyring_id must be empty or 16 bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raiseFloor(expected, req.Msg.GetMinEpoch())
	if s.held != nil && len(expected) != 0 && !bytesEqual(s.held.id(), expected) && strings.HasPrefix(s.source, "peer ") {
		// A keyring taken from a peer that is not this database's (the
		// peer held a stale one): forget it and ask for the right one.
		s.log.WarnContext(ctx, "dropping a keyring from a peer that is not the one Nexus expects",
			slog.String("held", hex.EncodeToString(s.held.id())), slog.String("expected", hex.EncodeToString(expected)))
		s.dropLocked()
	}
	resp := &keeperv1.StatusResponse{SealedOnPurpose: s.onPurpose}
	if s.held != nil {
		resp.Unsealed = true
		resp.KeyringId = s.held.id()
		resp.ActiveKeyVersion = s.held.ring.ActiveVersion()
		resp.OldestKeyVersion = s.held.ring.OldestVersion()
		resp.Epoch = s.held.epoch()
		resp.Source = s.source
		if s.staleLocked() {
			s.wakeReseed()
		}
		return connect.NewResponse(resp), nil
	}
	if len(expected) != 0 && !s.onPurpose {
		s.wanted = append(s.wanted[:0], expected...)
		s.wakeReseed()
	}
	return connect.NewResponse(resp), nil
}

// dataKeyRing checks a data key request naming dekID (the caller is Nexus,
// the id is well-formed, a keyring is held) and returns the keyring, held
// until release is called.
func (s *Server) dataKeyRing(ctx context.Context, dekID []byte) (h *holding, release func(), err error) {
	if err := s.authorize(ctx); err != nil {
		return nil, nil, err
	}
	if len(dekID) != keyring.DEKIDSize {
		return nil, nil, invalid("dek_id must be 16 bytes")
	}
	s.mu.RLock()
	if s.held == nil {
		s.mu.RUnlock()
		return nil, nil, sealedErr()
	}
	return s.held, s.mu.RUnlock, nil
}

// GenerateDataKey returns a new data key in the clear and wrapped under the
// active root key.
func (s *Server) GenerateDataKey(ctx context.Context, req *connect.Request[keeperv1.GenerateDataKeyRequest]) (*connect.Response[keeperv1.GenerateDataKeyResponse], error) {
	dekID := req.Msg.GetDekId()
	h, release, err := s.dataKeyRing(ctx, dekID)
	if err != nil {
		return nil, err
	}
	if held, committed := h.epoch(), req.Msg.GetMinEpoch(); held < committed {
		release()
		s.wantEpoch(ctx, committed)
		return nil, staleErr(fmt.Sprintf("keyring epoch %d is older than epoch %d, committed", held, committed))
	}
	defer release()
	plaintext, wrapped, version, err := h.ring.WrapDataKey(dekID)
	if err != nil {
		return nil, s.internal(ctx, "wrap data key", err)
	}
	return connect.NewResponse(&keeperv1.GenerateDataKeyResponse{
		Plaintext:      plaintext,
		Wrapped:        wrapped,
		RootKeyVersion: version,
		Epoch:          h.epoch(),
	}), nil
}

// DecryptDataKey unwraps a data key made by GenerateDataKey. A wrapped key
// that does not authenticate is reported as data loss.
func (s *Server) DecryptDataKey(ctx context.Context, req *connect.Request[keeperv1.DecryptDataKeyRequest]) (*connect.Response[keeperv1.DecryptDataKeyResponse], error) {
	dekID := req.Msg.GetDekId()
	h, release, err := s.dataKeyRing(ctx, dekID)
	if err != nil {
		return nil, err
	}
	version := req.Msg.GetRootKeyVersion()
	plaintext, err := h.ring.UnwrapDataKey(dekID, req.Msg.GetWrapped(), version)
	held := h.versions()
	release()
	if err != nil {
		return nil, s.unwrapErr(ctx, held, dekID, version, err)
	}
	return connect.NewResponse(&keeperv1.DecryptDataKeyResponse{Plaintext: plaintext}), nil
}

// unwrapErr is the refusal of a wrapped data key that did not unwrap under
// h: a root key version above the held ones is a newer epoch this Keeper
// missed (stale, and it asks its peers); otherwise the key was tampered
// with, belongs to another keyring or names a destroyed version.
func (s *Server) unwrapErr(ctx context.Context, h heldVersions, dekID []byte, version uint32, err error) error {
	if !errors.Is(err, keyring.ErrUnwrap) {
		return s.internal(ctx, "unwrap data key", err)
	}
	if version > h.active {
		s.wantNewer(ctx, h.epoch+1)
		return staleErr(fmt.Sprintf("root key version %d is newer than the keyring held", version))
	}
	s.log.WarnContext(ctx, "data key does not unwrap",
		slog.String("dek_id", hex.EncodeToString(dekID)),
		slog.Uint64("root_key_version", uint64(version)))
	if version != 0 && version < h.oldest {
		return keeperError(keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY, fmt.Sprintf("data key is wrapped under root key version %d, which was destroyed", version))
	}
	return keeperError(keeperv1.ErrorDetail_REASON_CORRUPT_DATA_KEY, "data key does not unwrap: tampered or from another keyring")
}

// checkHeld refuses a keyring other than the one held, before spending an
// Argon2id derivation on it.
func (s *Server) checkHeld(id []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.held != nil && !bytesEqual(s.held.id(), id) {
		return heldOther()
	}
	return nil
}

// acquireKDF waits for the Argon2id slot or for ctx to end.
func (s *Server) acquireKDF(ctx context.Context) error {
	select {
	case s.kdfSlot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return contextErr(ctx.Err())
	}
}

// releaseKDF frees the Argon2id slot.
func (s *Server) releaseKDF() { <-s.kdfSlot }
