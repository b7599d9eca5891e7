package server

import "github.com/spike-dev/spike/keeper/internal/keyring"

// holding is the keyring a Keeper holds: always its root keys and, when it
// was opened from a format 2 sealed keyring (or given by a peer that held
// one), the unlocked form: the keyring key and sealed form that Rotate,
// DestroyRootKeys, Advance and peers need. A format 1 keyring has only the
// root keys and epoch 0.
type holding struct {
	ring *keyring.Keyring
	u    *keyring.Unlocked // nil: format 1
}

// holdingOf holds an unlocked keyring.
func holdingOf(u *keyring.Unlocked) *holding { return &holding{ring: u.Keyring(), u: u} }

// epoch is the held keyring's epoch, 0 in format 1.
func (h *holding) epoch() uint64 {
	if h.u == nil {
		return 0
	}
	return h.u.Epoch()
}

// id is the held keyring's id.
func (h *holding) id() []byte { return h.ring.ID() }

// drop zeroes everything held.
func (h *holding) drop() {
	if h.u != nil {
		h.u.Drop()
		return
	}
	h.ring.Drop()
}

// supersedes reports whether h should replace old: the same keyring at a
// newer epoch, or the same root keys now with their unlocked form.
func (h *holding) supersedes(old *holding) bool {
	if !bytesEqual(h.id(), old.id()) {
		return false
	}
	if h.epoch() != old.epoch() {
		return h.epoch() > old.epoch()
	}
	return old.u == nil && h.u != nil && h.ring.Equal(old.ring)
}

// heldVersions is what a refusal needs to know of a holding after its
// lock is released.
type heldVersions struct {
	epoch          uint64
	active, oldest uint32
}

// versions reads h's epoch and versions; the caller holds the server's
// lock.
func (h *holding) versions() heldVersions {
	return heldVersions{epoch: h.epoch(), active: h.ring.ActiveVersion(), oldest: h.ring.OldestVersion()}
}
