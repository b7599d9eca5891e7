package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// errUnchanged stops a reseal that finds nothing to do.
var errUnchanged = errors.New("nothing to reseal")

// Reseal seals path's head, and every retained version that names another
// data key, again under the active data key, so that older data keys can
// be retired. Nothing a reader sees changes: the versions keep their keys
// (sealed in the head) and values; only the data key that seals the head,
// and the one each value names, become the active one. A secret that
// names only the active key, or is gone, is left alone; resealed says
// whether it was written.
func (e *Engine) Reseal(ctx context.Context, path string) (resealed bool, err error) {
	_, _, err = e.retrying(ctx, path, func(active envelope.Key) ([]byte, bool, error) {
		return nil, false, e.store.ResealSecret(ctx, path, func(cur *secret.Stored, rows []secret.Row) (secret.Write, []byte, error) {
			if cur == nil {
				return secret.Write{}, nil, errUnchanged // deleted meanwhile
			}
			if cur.Head == nil {
				return secret.Write{}, nil, errAdopt // adoption seals under the active key
			}
			w, err := e.resealing(ctx, *cur, rows, active)
			return w, nil, err
		})
	})
	switch {
	case errors.Is(err, errUnchanged):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// resealing computes the write that reseals cur under active, or
// errUnchanged.
func (e *Engine) resealing(ctx context.Context, cur secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, error) {
	path := cur.Path
	headKey, err := envelope.KeyID(cur.Head)
	if err != nil {
		return secret.Write{}, secret.ErrTampered(path, "its sealed head is malformed")
	}
	stale := headKey != active.ID
	for _, r := range rows {
		stale = stale || r.RowState() != secret.Destroyed && !bytes.Equal(r.DEKID, active.ID[:])
	}
	if !stale {
		return secret.Write{}, errUnchanged
	}
	var w secret.Write
	h, err := e.openHead(ctx, cur, rows, true)
	if err != nil {
		return w, err
	}
	for _, r := range rows {
		if r.RowState() == secret.Destroyed || bytes.Equal(r.DEKID, active.ID[:]) {
			continue
		}
		hv, ok := h.Find(r.Version)
		if !ok || r.Format != envelope.FormatVersionKey {
			return w, secret.ErrTampered(path, fmt.Sprintf("version %d is not sealed under a key of its own in its head", r.Version))
		}
		plain, err := e.openPlain(path, h, hv, r)
		if err != nil {
			return w, err
		}
		sealed, err := sealValue(active, hv, path, h.Incarnation, plain)
		clear(plain)
		if err != nil {
			return w, err
		}
		w.Reseal = append(w.Reseal, secret.Row{Version: r.Version, Sealed: sealed, DEKID: active.ID[:]})
	}
	if err := e.sealHead(path, h, active, &w); err != nil {
		return w, err
	}
	return w, nil
}

// sealValue seals a version's value under its own key, naming the data
// key active.
func sealValue(active envelope.Key, hv secret.HeadVersion, path string, incarnation, plain []byte) ([]byte, error) {
	vk, err := envelope.NewKey(active.ID, hv.Key)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "version %d of %s has no valid key in its sealed head", hv.Version, path)
	}
	return vk.SealVersion(plain, envelope.ValueAAD(path, incarnation, hv.Version, hv.CreatedBy))
}
