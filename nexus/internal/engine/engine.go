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
	AdoptSecret(ctx context.Context, path string, change postgres.Change) error
	ResealSecret(ctx context.Context, path string, change postgres.Change) error
	Outcome(ctx context.Context, rec *audit.Entry) ([]byte, bool, error)
}

// Keys is what the engine needs of the key manager.
type Keys interface {
	// ActiveKey returns the data key that seals new heads.
	ActiveKey(ctx context.Context) (envelope.Key, error)
	// Open opens a value sealed under a data key; failures are
	// fault.DataLoss naming what.
	Open(ctx context.Context, sealed, aad []byte, what string) ([]byte, error)
	// OpenCached is Open without I/O: ok is false when the data key is not
	// in memory, which Fetch brings it into.
	OpenCached(sealed, aad []byte, what string) (plain []byte, ok bool, err error)
	Fetch(ctx context.Context, sealed []byte) error
}

// needKeyError stops a change whose locked row needs data keys that are
// not in memory: fetching them there would hold the row lock and a
// database connection while waiting for another connection. The change is
// retried once the keys are fetched.
type needKeyError struct{ sealed [][]byte }

func (needKeyError) Error() string { return "data keys must be fetched first" }

// errAdopt stops a change of a secret written before heads existed: its
// head is sealed first (adopt), then the change is retried.
var errAdopt = errors.New("the secret has no sealed head yet")

// maxKeyFetches bounds how often a change is retried for keys to fetch.
const maxKeyFetches = 3

// change is a secret write computed under the row lock, sealing with
// active.
type change func(cur *secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, []byte, error)

// writeSecret runs a change through the store with the active data key
// fetched beforehand, the keys of the stored row fetched outside the row
// lock, and a secret without a head adopted first.
func (e *Engine) writeSecret(ctx context.Context, rec *audit.Entry, path string, fn change) ([]byte, bool, error) {
	return e.retrying(ctx, path, func(active envelope.Key) ([]byte, bool, error) {
		return e.store.WriteSecret(ctx, rec, path, func(cur *secret.Stored, rows []secret.Row) (secret.Write, []byte, error) {
			if cur != nil && cur.Head == nil {
				return secret.Write{}, nil, errAdopt
			}
			return fn(cur, rows, active)
		})
	})
}

// retrying runs write with the active data key, fetching the keys and
// adopting the secret that write asks for, and then running it again.
func (e *Engine) retrying(ctx context.Context, path string, write func(active envelope.Key) ([]byte, bool, error)) ([]byte, bool, error) {
	for attempt := 0; ; attempt++ {
		active, err := e.keys.ActiveKey(ctx)
		if err != nil {
			return nil, false, err
		}
		out, replayed, err := write(active)
		var nk needKeyError
		switch {
		case attempt < maxKeyFetches && errors.As(err, &nk):
			for _, sealed := range nk.sealed {
				if err := e.keys.Fetch(ctx, sealed); err != nil {
					return nil, false, err
				}
			}
		case attempt < maxKeyFetches && errors.Is(err, errAdopt):
			if err := e.adopt(ctx, path); err != nil {
				return nil, false, err
			}
		default:
			return out, replayed, err
		}
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

// openHead opens a secret's head and checks it against the plain columns,
// and against the version rows when rows is not nil. With locked (the
// caller holds the row lock) it does no I/O: a data key not in memory is a
// needKeyError.
func (e *Engine) openHead(ctx context.Context, st secret.Stored, rows []secret.Row, locked bool) (*secret.Head, error) {
	if st.Head == nil {
		return nil, errAdopt
	}
	if len(st.Incarnation) != secret.IncarnationSize {
		return nil, secret.ErrTampered(st.Path, "its incarnation id is malformed")
	}
	plain, err := e.open(ctx, st.Head, envelope.HeadAAD(st.Path, st.Incarnation), "the head of secret "+st.Path, locked)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	h, err := decodeHead(plain)
	if err != nil {
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
	return h, nil
}

// open opens a value sealed under a data key; locked as for openHead.
func (e *Engine) open(ctx context.Context, sealed, aad []byte, what string, locked bool) ([]byte, error) {
	if !locked {
		return e.keys.Open(ctx, sealed, aad, what)
	}
	plain, ok, err := e.keys.OpenCached(sealed, aad, what)
	if !ok {
		return nil, needKeyError{sealed: [][]byte{sealed}}
	}
	return plain, err
}

// adopt seals a head for a secret written before heads existed, trusting
// its rows as found only where they authenticate: every version that still
// holds a value must open under its old binding (data key, path and
// version), and is sealed again under a key of its own, so that no value
// of the secret opens the old way any more. A head-less secret with a
// value that does not open is data loss: its head was removed.
func (e *Engine) adopt(ctx context.Context, path string) error {
	_, _, err := e.retrying(ctx, path, func(active envelope.Key) ([]byte, bool, error) {
		return nil, false, e.store.AdoptSecret(ctx, path, func(cur *secret.Stored, rows []secret.Row) (secret.Write, []byte, error) {
			if cur == nil {
				return secret.Write{}, nil, errNotFound(path)
			}
			if cur.Head != nil { // adopted meanwhile: write nothing
				return secret.Write{}, nil, errAdopted
			}
			w, err := e.adoption(*cur, rows, active)
			return w, nil, err
		})
	})
	if errors.Is(err, errAdopted) {
		return nil
	}
	return err
}

// errAdopted says that another request sealed the head first.
var errAdopted = errors.New("adopted meanwhile")

func errNotFound(path string) error { return fault.New(fault.NotFound, "secret %s not found", path) }

// adoption computes the write that adopts the head-less secret cur.
func (e *Engine) adoption(cur secret.Stored, rows []secret.Row, active envelope.Key) (secret.Write, error) {
	path := cur.Path
	var missing [][]byte
	opens := make([][]byte, len(rows))
	for i, r := range rows {
		if r.RowState() == secret.Destroyed {
			continue
		}
		if r.Format == envelope.FormatVersionKey {
			return secret.Write{}, secret.ErrTampered(path, "its sealed head was removed")
		}
		what := fmt.Sprintf("version %d of %s", r.Version, path)
		if id, err := envelope.KeyID(r.Sealed); err != nil || string(id[:]) != string(r.DEKID) {
			return secret.Write{}, secret.ErrTampered(path, fmt.Sprintf("%s does not authenticate (its sealed head may have been removed)", what))
		}
		plain, ok, err := e.keys.OpenCached(r.Sealed, envelope.SecretAAD(path, r.Version), what)
		switch {
		case !ok:
			missing = append(missing, r.Sealed)
		case err != nil:
			return secret.Write{}, secret.ErrTampered(path, fmt.Sprintf("%s does not authenticate (its sealed head may have been removed)", what))
		default:
			opens[i] = plain
		}
	}
	defer func() {
		for _, p := range opens {
			clear(p)
		}
	}()
	var custom map[string]string
	if cur.LegacyCustom != nil {
		plain, ok, err := e.keys.OpenCached(cur.LegacyCustom, envelope.MetadataAAD(path), "custom metadata of "+path)
		switch {
		case !ok:
			missing = append(missing, cur.LegacyCustom)
		case err != nil:
			return secret.Write{}, err
		default:
			err := json.Unmarshal(plain, &custom)
			clear(plain)
			if err != nil {
				return secret.Write{}, fault.Wrap(fault.DataLoss, err, "custom metadata of %s does not decode", path)
			}
		}
	}
	if len(missing) > 0 {
		return secret.Write{}, needKeyError{sealed: missing}
	}

	inc, err := random(secret.IncarnationSize)
	if err != nil {
		return secret.Write{}, err
	}
	h := &secret.Head{Incarnation: inc, Current: cur.Current, Oldest: cur.Oldest,
		MaxVersions: cur.MaxVersions, CASRequired: cur.CASRequired, Custom: custom}
	var w secret.Write
	for i, r := range rows {
		if r.Version < max(cur.Oldest, 1) || r.Version > cur.Current {
			return secret.Write{}, secret.ErrTampered(path, fmt.Sprintf("version %d is outside its kept range", r.Version))
		}
		hv := secret.HeadVersion{Version: r.Version, State: r.RowState(), CreatedBy: r.CreatedBy}
		if opens[i] != nil {
			if hv.Key, err = random(envelope.KeySize); err != nil {
				return secret.Write{}, err
			}
			vk, err := envelope.NewKey(active.ID, hv.Key)
			if err != nil {
				return secret.Write{}, err
			}
			sealed, err := vk.SealVersion(opens[i], envelope.ValueAAD(path, inc, r.Version, r.CreatedBy))
			if err != nil {
				return secret.Write{}, err
			}
			w.Reseal = append(w.Reseal, secret.Row{Version: r.Version, Sealed: sealed, DEKID: active.ID[:]})
		}
		h.Versions = append(h.Versions, hv)
	}
	if h.Current > 0 && (len(h.Versions) == 0 || h.Versions[len(h.Versions)-1].Version != h.Current) {
		return secret.Write{}, secret.ErrTampered(path, "the row of its current version is missing")
	}
	if err := e.sealHead(path, h, active, &w); err != nil {
		return secret.Write{}, err
	}
	return w, nil
}

// sealHead seals h for path under key into w, with its plain copies.
func (e *Engine) sealHead(path string, h *secret.Head, key envelope.Key, w *secret.Write) error {
	plain, err := encodeHead(h)
	h.Wipe() // the head is done with once sealed
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
		return e.openHead(ctx, *cur, rows, true)
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
		w.Change = secret.ChangeWritten
		if err := e.sealHead(path, h, active, &w); err != nil {
			return w, nil, err
		}
		out, err := json.Marshal(putOutcome{Version: v.Version, CreatedAt: v.CreatedAt})
		return w, out, err
	})
	if err != nil {
		return secret.Version{}, err
	}
	if replayed {
		return decodePut(path, createdBy, outcome)
	}
	return v, nil
}

// Replayed returns the version a put, patch or rollback made when rec's
// idempotency key was applied before: a handler that reads before it
// writes asks first, so that its retry is not refused by what its first
// attempt changed.
func (e *Engine) Replayed(ctx context.Context, rec *audit.Entry, path, createdBy string) (secret.Version, bool, error) {
	outcome, ok, err := e.store.Outcome(ctx, rec)
	if err != nil || !ok {
		return secret.Version{}, false, err
	}
	first, err := decodePut(path, createdBy, outcome)
	return first, err == nil, err
}

// putOutcome is what a put, patch or rollback keeps under its idempotency
// key: nothing of the value.
type putOutcome struct {
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

func decodePut(path, createdBy string, outcome []byte) (secret.Version, error) {
	var o putOutcome
	if err := json.Unmarshal(outcome, &o); err != nil || o.Version < 1 {
		return secret.Version{}, fault.New(fault.DataLoss, "the stored outcome of this request does not decode")
	}
	return secret.Version{Path: path, Version: o.Version, CreatedBy: createdBy, CreatedAt: o.CreatedAt}, nil
}

// Read returns a live version of path (0: the current one) and its data.
// Missing, deleted and destroyed versions are fault.NotFound saying which;
// anything that does not authenticate is fault.DataLoss.
func (e *Engine) Read(ctx context.Context, path string, version int64) (secret.Read, map[string]string, error) {
	st, row, span, err := e.store.ReadSecret(ctx, path, version)
	if err != nil {
		return secret.Read{}, nil, err
	}
	h, err := e.openHead(ctx, st, nil, false)
	if errors.Is(err, errAdopt) {
		if err := e.adopt(ctx, path); err != nil {
			return secret.Read{}, nil, err
		}
		return e.Read(ctx, path, version)
	}
	if err != nil {
		return secret.Read{}, nil, err
	}
	defer h.Wipe()
	if err := h.CheckSpan(path, span.Count, span.Lowest, span.Highest); err != nil {
		return secret.Read{}, nil, err
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
	data, err := e.openValue(path, h, hv, *row)
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
func (e *Engine) openValue(path string, h *secret.Head, hv secret.HeadVersion, row secret.Row) (map[string]string, error) {
	plain, err := e.openPlain(path, h, hv, row)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var data map[string]string
	if err := json.Unmarshal(plain, &data); err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "version %d of %s does not decode", hv.Version, path)
	}
	return data, nil
}

// openPlain opens a version's value with its own key, undecoded. The
// caller clears it.
func (e *Engine) openPlain(path string, h *secret.Head, hv secret.HeadVersion, row secret.Row) ([]byte, error) {
	what := fmt.Sprintf("version %d of %s", hv.Version, path)
	if id, err := envelope.KeyID(row.Sealed); err != nil || string(id[:]) != string(row.DEKID) {
		return nil, fault.New(fault.DataLoss, "%s failed authentication: its data key reference was altered", what)
	}
	var id envelope.DEKID // the value names its data key, but opens with its own key
	vk, err := envelope.NewKey(id, hv.Key)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s has no valid key in its sealed head", what)
	}
	plain, err := vk.Open(row.Sealed, envelope.ValueAAD(path, h.Incarnation, hv.Version, hv.CreatedBy))
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	return plain, nil
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
		switch {
		case len(w.Deleted) > 0:
			w.Change = secret.ChangeDeleted
		case len(w.Undeleted) > 0:
			w.Change = secret.ChangeUndeleted
		case len(w.Destroyed) > 0:
			w.Change = secret.ChangeDestroyed
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
	// Incarnation is the secret's incarnation id, from its sealed head.
	Incarnation []byte
}

// Metadata returns the settings, custom metadata and version states of path.
func (e *Engine) Metadata(ctx context.Context, path string) (Metadata, error) {
	st, rows, err := e.store.SecretRows(ctx, path)
	if err != nil {
		return Metadata{}, err
	}
	h, err := e.openHead(ctx, st, rows, false)
	if errors.Is(err, errAdopt) {
		if err := e.adopt(ctx, path); err != nil {
			return Metadata{}, err
		}
		return e.Metadata(ctx, path)
	}
	if err != nil {
		return Metadata{}, err
	}
	h.Wipe()
	m := Metadata{Metadata: secret.Metadata{
		Path:                 path,
		CurrentVersion:       h.Current,
		OldestVersion:        h.Oldest,
		MaxVersions:          h.MaxVersions,
		EffectiveMaxVersions: e.retention(h.MaxVersions),
		CASRequired:          h.CASRequired,
		CreatedAt:            st.CreatedAt,
		UpdatedAt:            st.UpdatedAt,
	}, Custom: h.Custom, Incarnation: h.Incarnation}
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
		w.Change = secret.ChangeMetadata
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
