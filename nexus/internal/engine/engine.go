// Package engine is the versioned secrets engine. Each secret has a sealed
// head (secret.Head) that holds everything SPIKE decides on; every read and
// write opens it and compares the database's plain columns and rows with
// it, so that a row edited, replayed, moved from another secret or left
// over from an earlier secret at the same path is reported as data loss,
// never served. Each version's value is sealed under a key of its own that
// only the head holds: destroying the version deletes the key.
//
// The engine seals and opens; the store (package postgres) only stores.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// Store is what the engine needs of the database.
type Store interface {
	ReadSecret(ctx context.Context, path string, version int64) (secret.Stored, *secret.Row, postgres.Span, error)
	SecretRows(ctx context.Context, path string) (secret.Stored, []secret.Row, error)
	WriteSecret(ctx context.Context, rec *audit.Entry, path string, change postgres.Change) ([]byte, bool, error)
	Outcome(ctx context.Context, rec *audit.Entry) ([]byte, bool, error)
}

// Keys is what the engine needs of the key manager.
type Keys interface {
	// ActiveKey returns the data key that seals new heads.
	ActiveKey(ctx context.Context) (envelope.Key, error)
	// Open opens a value sealed under a data key; failures are
	// fault.DataLoss naming what.
	Open(ctx context.Context, sealed, aad []byte, what string) ([]byte, error)
	// Cached reports whether Open of sealed needs no I/O; Fetch makes it so.
	Cached(sealed []byte) bool
	Fetch(ctx context.Context, sealed []byte) error
}

// needKeyError stops a write whose locked row needs a data key that is not in
// memory: fetching it there would hold the row lock and a database
// connection while waiting for another connection. The write is retried
// once the key is fetched.
type needKeyError struct{ sealed []byte }

func (needKeyError) Error() string { return "a data key must be fetched first" }

// writeSecret runs a change through the store with the active data key
// fetched beforehand, and the keys of the stored row fetched outside the
// row lock when they are not in memory.
func (e *Engine) writeSecret(ctx context.Context, rec *audit.Entry, path string,
	change func(cur *secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, []byte, error),
) ([]byte, bool, error) {
	for attempt := 0; ; attempt++ {
		active, err := e.keys.ActiveKey(ctx)
		if err != nil {
			return nil, false, err
		}
		out, replayed, err := e.store.WriteSecret(ctx, rec, path, func(cur *secret.Stored, rows []secret.Row) (secret.Write, []byte, error) {
			if cur != nil {
				for _, sealed := range [][]byte{cur.Head, cur.LegacyCustom} {
					if sealed != nil && !e.keys.Cached(sealed) {
						return secret.Write{}, nil, needKeyError{sealed: sealed}
					}
				}
			}
			return change(cur, rows, active)
		})
		var nk needKeyError
		if attempt < 3 && errors.As(err, &nk) {
			if err := e.keys.Fetch(ctx, nk.sealed); err != nil {
				return nil, false, err
			}
			continue
		}
		return out, replayed, err
	}
}

// Engine reads and writes secrets.
type Engine struct {
	store Store
	keys  Keys
	// defaultMaxVersions applies to secrets that set no max_versions.
	defaultMaxVersions int32
	now                func() time.Time
}

// New returns an engine over store and keys; defaultMaxVersions is the
// retention of secrets that set none.
func New(store Store, keys Keys, defaultMaxVersions int32) *Engine {
	return &Engine{store: store, keys: keys, defaultMaxVersions: defaultMaxVersions, now: time.Now}
}

// retention is the effective max_versions of a secret that sets configured.
func (e *Engine) retention(configured int32) int32 {
	if configured > 0 {
		return configured
	}
	return e.defaultMaxVersions
}

// openHead opens a secret's head and checks it against the plain columns
// and the version rows. A secret last written before heads existed gets a
// head built from its rows, trusted as found: its next write seals it.
func (e *Engine) openHead(ctx context.Context, st secret.Stored, rows []secret.Row) (*secret.Head, error) {
	if st.Head == nil {
		return e.adopt(ctx, st, rows)
	}
	if len(st.Incarnation) != secret.IncarnationSize {
		return nil, secret.ErrTampered(st.Path, "its incarnation id is malformed")
	}
	plain, err := e.keys.Open(ctx, st.Head, envelope.HeadAAD(st.Path, st.Incarnation), "the head of secret "+st.Path)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var h secret.Head
	if err := json.Unmarshal(plain, &h); err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "the head of secret %s does not decode", st.Path)
	}
	if err := h.Check(st); err != nil {
		return nil, err
	}
	if rows != nil {
		if err := h.CheckRows(st.Path, rows); err != nil {
			return nil, err
		}
	}
	return &h, nil
}

// adopt builds the head of a secret written before heads existed from its
// plain columns and rows.
func (e *Engine) adopt(ctx context.Context, st secret.Stored, rs []secret.Row) (*secret.Head, error) {
	for _, r := range rs {
		// Only a secret that has a head writes values under version keys:
		// such a value without a head means the head was removed.
		if r.Format == envelope.FormatVersionKey {
			return nil, secret.ErrTampered(st.Path, "its sealed head was removed")
		}
	}
	h := &secret.Head{Current: st.Current, Oldest: st.Oldest, MaxVersions: st.MaxVersions, CASRequired: st.CASRequired}
	for _, r := range rs {
		h.Versions = append(h.Versions, secret.HeadVersion{Version: r.Version, State: r.RowState(), CreatedBy: r.CreatedBy, Legacy: true})
	}
	if st.LegacyCustom != nil {
		what := "custom metadata of " + st.Path
		plain, err := e.keys.Open(ctx, st.LegacyCustom, envelope.MetadataAAD(st.Path), what)
		if err != nil {
			return nil, err
		}
		defer clear(plain)
		if err := json.Unmarshal(plain, &h.Custom); err != nil {
			return nil, fault.Wrap(fault.DataLoss, err, "%s does not decode", what)
		}
	}
	return h, nil
}

// sealHead seals h for path under key into w, with its plain copies.
func (e *Engine) sealHead(path string, h *secret.Head, key envelope.Key, w *secret.Write) error {
	plain, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode head of %s: %w", path, err)
	}
	defer clear(plain)
	if w.Head, err = key.Seal(plain, envelope.HeadAAD(path, h.Incarnation)); err != nil {
		return err
	}
	h.Plain(w)
	return nil
}

// begin returns the head to change: the stored one, or a new one (with a
// new incarnation) when the secret does not exist; w says which.
func (e *Engine) begin(ctx context.Context, cur *secret.Stored, rows []secret.Row, w *secret.Write) (*secret.Head, error) {
	if cur != nil {
		h, err := e.openHead(ctx, *cur, rows)
		if err != nil {
			return nil, err
		}
		if h.Incarnation == nil { // adopted: give it an incarnation now
			if h.Incarnation, err = random(secret.IncarnationSize); err != nil {
				return nil, err
			}
		}
		return h, nil
	}
	w.Create = true
	inc, err := random(secret.IncarnationSize)
	if err != nil {
		return nil, err
	}
	return secret.NewHead(inc), nil
}

func random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random bytes: %w", err)
	}
	return b, nil
}

// Put stores data as a new version of path, written by createdBy, with
// check-and-set against cas when given. A retry of a request (same
// idempotency key) returns the first outcome.
func (e *Engine) Put(ctx context.Context, rec *audit.Entry, path, createdBy string, data map[string]string, cas *int64) (secret.Version, error) {
	plain, err := json.Marshal(data)
	if err != nil {
		return secret.Version{}, fmt.Errorf("encode secret data: %w", err)
	}
	defer clear(plain)
	return e.write(ctx, rec, path, createdBy, plain, cas)
}

// write stores plain (the encoded data) as the next version.
func (e *Engine) write(ctx context.Context, rec *audit.Entry, path, createdBy string, plain []byte, cas *int64) (secret.Version, error) {
	var v secret.Version
	outcome, replayed, err := e.writeSecret(ctx, rec, path, func(cur *secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, []byte, error) {
		var w secret.Write
		h, err := e.begin(ctx, cur, rows, &w)
		if err != nil {
			return w, nil, err
		}
		if err := h.CheckCAS(path, cas); err != nil {
			return w, nil, err
		}
		vkey, err := random(envelope.KeySize)
		if err != nil {
			return w, nil, err
		}
		version := h.Add(createdBy, vkey, e.retention(h.MaxVersions))
		vk, err := envelope.NewKey(active.ID, vkey)
		if err != nil {
			return w, nil, err
		}
		sealed, err := vk.SealVersion(plain, envelope.ValueAAD(path, h.Incarnation, version, createdBy))
		if err != nil {
			return w, nil, err
		}
		v = secret.Version{Path: path, Version: version, CreatedBy: createdBy, CreatedAt: e.now().UTC().Truncate(time.Microsecond)}
		w.Insert = &secret.Row{Version: version, DEKID: active.ID[:], Sealed: sealed, CreatedBy: createdBy, CreatedAt: v.CreatedAt}
		if err := e.sealHead(path, h, active, &w); err != nil {
			return w, nil, err
		}
		out, err := json.Marshal(v)
		return w, out, err
	})
	if err != nil {
		return secret.Version{}, err
	}
	if replayed {
		var first secret.Version
		if err := json.Unmarshal(outcome, &first); err != nil {
			return secret.Version{}, fault.Wrap(fault.DataLoss, err, "the stored outcome of this request does not decode")
		}
		return first, nil
	}
	return v, nil
}

// Replayed returns the version a put, patch or rollback made when rec's
// idempotency key was applied before: a handler that reads before it
// writes asks first, so that its retry is not refused by what its first
// attempt changed.
func (e *Engine) Replayed(ctx context.Context, rec *audit.Entry) (secret.Version, bool, error) {
	outcome, ok, err := e.store.Outcome(ctx, rec)
	if err != nil || !ok {
		return secret.Version{}, false, err
	}
	var first secret.Version
	if err := json.Unmarshal(outcome, &first); err != nil {
		return secret.Version{}, false, fault.Wrap(fault.DataLoss, err, "the stored outcome of this request does not decode")
	}
	return first, true, nil
}

// Read returns a live version of path (0: the current one) and its data.
// Missing, deleted and destroyed versions are fault.NotFound saying which;
// anything that does not authenticate is fault.DataLoss.
func (e *Engine) Read(ctx context.Context, path string, version int64) (secret.Read, map[string]string, error) {
	st, row, span, err := e.store.ReadSecret(ctx, path, version)
	if err != nil {
		return secret.Read{}, nil, err
	}
	var rows []secret.Row // read only for a secret without a head
	if st.Head == nil {
		if _, rows, err = e.store.SecretRows(ctx, path); err != nil {
			return secret.Read{}, nil, err
		}
	}
	h, err := e.openHead(ctx, st, rows)
	if err != nil {
		return secret.Read{}, nil, err
	}
	if st.Head != nil {
		if err := h.CheckSpan(path, span.Count, span.Lowest, span.Highest); err != nil {
			return secret.Read{}, nil, err
		}
	}
	if version == 0 {
		version = h.Current
	}
	switch {
	case h.Current == 0:
		return secret.Read{}, nil, fault.New(fault.NotFound, "secret %s has no versions", path)
	case version > h.Current:
		return secret.Read{}, nil, fault.New(fault.NotFound, "version %d of %s does not exist: the newest is %d", version, path, h.Current)
	case version < max(h.Oldest, 1):
		return secret.Read{}, nil, fault.New(fault.NotFound, "version %d of %s no longer exists: the oldest kept is %d", version, path, h.Oldest)
	case row == nil || row.Version != version:
		return secret.Read{}, nil, secret.ErrTampered(path, fmt.Sprintf("the row of version %d is missing", version))
	}
	hv, err := h.CheckRow(path, *row)
	if err != nil {
		return secret.Read{}, nil, err
	}
	switch hv.State {
	case secret.Destroyed:
		return secret.Read{}, nil, fault.New(fault.NotFound, "version %d of %s was destroyed", version, path)
	case secret.Deleted:
		return secret.Read{}, nil, fault.New(fault.NotFound, "version %d of %s was deleted", version, path)
	case secret.Active:
	}
	data, err := e.openValue(ctx, path, h, hv, *row)
	if err != nil {
		return secret.Read{}, nil, err
	}
	r := secret.Read{
		Version:     secret.Version{Path: path, Version: version, CreatedBy: row.CreatedBy, CreatedAt: row.CreatedAt},
		Current:     h.Current,
		CASRequired: h.CASRequired,
	}
	return r, data, nil
}

// openValue opens a version's value with its own key (or, for a legacy
// version, the data key) and decodes it.
func (e *Engine) openValue(ctx context.Context, path string, h *secret.Head, hv secret.HeadVersion, row secret.Row) (map[string]string, error) {
	what := fmt.Sprintf("version %d of %s", hv.Version, path)
	var (
		plain []byte
		err   error
	)
	if id, err := envelope.KeyID(row.Sealed); err != nil || string(id[:]) != string(row.DEKID) {
		return nil, fault.New(fault.DataLoss, "%s failed authentication: its data key reference was altered", what)
	}
	if hv.Legacy {
		plain, err = e.keys.Open(ctx, row.Sealed, envelope.SecretAAD(path, hv.Version), what)
	} else {
		var id envelope.DEKID
		var vk envelope.Key
		if vk, err = envelope.NewKey(id, hv.Key); err != nil {
			return nil, fault.Wrap(fault.DataLoss, err, "%s has no valid key in its sealed head", what)
		}
		plain, err = vk.Open(row.Sealed, envelope.ValueAAD(path, h.Incarnation, hv.Version, hv.CreatedBy))
		if err != nil {
			err = fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
		}
	}
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s does not decode", what)
	}
	return data, nil
}

// Change deletes, undeletes or destroys versions of path (the current one
// when versions is empty) and returns the versions named.
func (e *Engine) Change(ctx context.Context, rec *audit.Entry, path string, versions []int64, change secret.VersionChange) ([]int64, error) {
	var changed []int64
	outcome, replayed, err := e.writeSecret(ctx, rec, path, func(cur *secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, []byte, error) {
		var w secret.Write
		if cur == nil {
			return w, nil, fault.New(fault.NotFound, "secret %s not found", path)
		}
		h, err := e.begin(ctx, cur, rows, &w)
		if err != nil {
			return w, nil, err
		}
		if changed, err = h.Change(path, versions, change, &w); err != nil {
			return w, nil, err
		}
		if err := e.sealHead(path, h, active, &w); err != nil {
			return w, nil, err
		}
		out, err := json.Marshal(changed)
		return w, out, err
	})
	if err != nil {
		return nil, err
	}
	if replayed {
		if err := json.Unmarshal(outcome, &changed); err != nil {
			return nil, fault.Wrap(fault.DataLoss, err, "the stored outcome of this request does not decode")
		}
	}
	return changed, nil
}

// Metadata is a secret's metadata with its custom metadata in the clear.
type Metadata struct {
	secret.Metadata
	Custom map[string]string
}

// Metadata returns the settings, custom metadata and version states of path.
func (e *Engine) Metadata(ctx context.Context, path string) (Metadata, error) {
	st, rows, err := e.store.SecretRows(ctx, path)
	if err != nil {
		return Metadata{}, err
	}
	h, err := e.openHead(ctx, st, rows)
	if err != nil {
		return Metadata{}, err
	}
	m := Metadata{Metadata: secret.Metadata{
		Path:                 path,
		CurrentVersion:       h.Current,
		OldestVersion:        h.Oldest,
		MaxVersions:          h.MaxVersions,
		EffectiveMaxVersions: e.retention(h.MaxVersions),
		CASRequired:          h.CASRequired,
		CreatedAt:            st.CreatedAt,
		UpdatedAt:            st.UpdatedAt,
	}, Custom: h.Custom}
	for _, r := range rows {
		m.Versions = append(m.Versions, secret.Version{
			Path: path, Version: r.Version, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
			DeletedAt: r.DeletedAt, DestroyedAt: r.DestroyedAt,
		})
	}
	return m, nil
}

// UpdateMetadata changes the settings and custom metadata of path
// (custom, when u.SetCustomMetadata), creating the secret without versions
// if needed, and returns the result.
func (e *Engine) UpdateMetadata(ctx context.Context, rec *audit.Entry, u secret.MetadataUpdate, custom map[string]string) (Metadata, error) {
	if u.MaxVersions != nil {
		if err := secret.ValidateMaxVersions(*u.MaxVersions); err != nil {
			return Metadata{}, err
		}
	}
	_, _, err := e.writeSecret(ctx, rec, u.Path, func(cur *secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, []byte, error) {
		var w secret.Write
		h, err := e.begin(ctx, cur, rows, &w)
		if err != nil {
			return w, nil, err
		}
		h.Update(u, custom, e.retention)
		if err := e.sealHead(u.Path, h, active, &w); err != nil {
			return w, nil, err
		}
		// The outcome is the metadata, read again after the write: a
		// retry answers with the metadata as it is then.
		return w, []byte("{}"), nil
	})
	if err != nil {
		return Metadata{}, err
	}
	return e.Metadata(ctx, u.Path)
}
