package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
)

// The policy manifest says which policy rows are current. A policy row is
// sealed and bound to its name, so it cannot be forged or renamed, but on
// its own it could be replayed: deleted (or replaced) through SPIKE, then
// put back with SQL. The manifest, sealed and bound to a fixed label, holds
// the policy generation and the SHA-256 of each current row's sealed bytes
// (each seal has a fresh nonce, so every write of a policy hashes
// differently). Every policy change rewrites it in the change's
// transaction, and a row it does not list exactly grants nothing. A
// manifest whose generation is not the database's was replayed or the
// generation was edited: then nothing grants.
//
// Residual risk: whoever can write the database can restore an older copy
// of all three (policy rows, generation and manifest) taken together, and
// so bring back the policies of that moment. A running Nexus notices when
// the generation goes backwards (see Read) and refuses to load; a Nexus
// started after such a rollback cannot tell. Likewise, deleting the
// manifest and every policy row sealed since it exists brings a database
// back to before the manifest (policies written by an older SPIKE), whose
// rows are accepted again. Detecting these needs state outside the
// database (for example a generation kept by Keeper).
type manifest struct {
	Generation int64 `json:"generation"`
	// Policies maps a policy name to the hex SHA-256 of its sealed row.
	Policies map[string]string `json:"policies"`
}

func rowHash(sealed []byte) string {
	h := sha256.Sum256(sealed)
	return hex.EncodeToString(h[:])
}

// Opened is a stored policy that passed authentication, with its row.
type Opened struct {
	StoredPolicy
	Row policy.Record
	// hash is rowHash(Row.Sealed).
	hash string
}

// knownManifest is a manifest known to open: its sealed bytes and content.
type knownManifest struct {
	sealed []byte
	m      *manifest
}

// Rejected is a stored policy that failed authentication and grants
// nothing.
type Rejected struct {
	Name   string
	Reason string
}

// Snapshot is every stored policy of one generation, authenticated.
type Snapshot struct {
	Generation int64
	// Valid and Invalid are sorted by name.
	Valid   []Opened
	Invalid []Rejected
	// Problem says why every policy was rejected when the manifest itself
	// is missing, stale or forged; empty otherwise.
	Problem string
	// Legacy is true when no manifest exists yet (no policy changed since
	// SPIKE keeps one) and the rows that open were accepted.
	Legacy bool
}

// Read reads every stored policy and authenticates it against its name
// and the policy manifest. Rows that fail authentication are in
// Snapshot.Invalid; any error that prevents checking them (SPIKE sealed,
// database or Keeper unavailable) is returned instead. A policy generation
// lower than one this process has seen means the policy tables were rolled
// back outside SPIKE: a fault.DataLoss error.
func (p *Policies) Read(ctx context.Context) (Snapshot, error) {
	if err := p.keys.Ready(ctx); err != nil {
		return Snapshot{}, err
	}
	p.mu.RLock()
	floor := p.seen
	p.mu.RUnlock()
	stored, err := p.store.Policies(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if stored.Generation < floor {
		return Snapshot{}, fault.New(fault.DataLoss,
			"policy generation went back from %d to %d: the policy tables were restored or edited outside SPIKE "+
				"(after a deliberate restore, restart Nexus)", floor, stored.Generation)
	}
	p.mu.Lock()
	p.seen = max(p.seen, stored.Generation)
	p.mu.Unlock()
	return p.verify(ctx, stored)
}

func (p *Policies) verify(ctx context.Context, stored policy.Records) (Snapshot, error) {
	snap := Snapshot{Generation: stored.Generation}
	m, problem, err := p.openManifest(ctx, stored.Manifest, stored.Generation)
	if err != nil {
		return Snapshot{}, err
	}
	snap.Legacy = m == nil && problem == ""
	if problem == "" {
		snap.Valid = make([]Opened, 0, len(stored.Rows))
	}
	p.mu.RLock()
	cache := p.opened
	p.mu.RUnlock()
	for _, row := range stored.Rows {
		if problem != "" {
			snap.Invalid = append(snap.Invalid, Rejected{row.Name, problem})
			continue
		}
		hash := rowHash(row.Sealed)
		if m != nil && m.Policies[row.Name] != hash {
			snap.Invalid = append(snap.Invalid, Rejected{row.Name,
				"the row is not the one SPIKE last wrote (the policy manifest does not list it): it was inserted, replayed or edited outside SPIKE"})
			continue
		}
		sp, err := p.openKnown(ctx, cache, row, hash)
		switch {
		case fault.CodeOf(err) == fault.DataLoss:
			snap.Invalid = append(snap.Invalid, Rejected{row.Name, err.Error()})
			continue
		case err != nil:
			return Snapshot{}, err
		}
		if snap.Legacy && sp.Manifested {
			// Written under a manifest that is gone: the manifest was deleted.
			problem = "the policy manifest is missing, but policy " + row.Name +
				" was written while SPIKE kept one: the manifest was deleted outside SPIKE"
		}
		snap.Valid = append(snap.Valid, Opened{StoredPolicy: sp, Row: row, hash: hash})
	}
	if problem != "" {
		snap.Legacy = false
		for _, o := range snap.Valid {
			snap.Invalid = append(snap.Invalid, Rejected{o.Name, problem})
		}
		snap.Valid = nil
		sortRejected(snap.Invalid)
	}
	snap.Problem = problem
	return snap, nil
}

// openManifest opens the sealed manifest of generation gen. It returns nil
// and no problem when there is none yet; a problem when it is missing,
// forged or stale (nothing grants then); an error when it could not be
// checked. The manifest returned must not be modified.
func (p *Policies) openManifest(ctx context.Context, sealed []byte, gen int64) (*manifest, string, error) {
	if sealed == nil {
		p.mu.RLock()
		saw := p.sawManifest
		p.mu.RUnlock()
		if saw {
			return nil, "the policy manifest is missing although this Nexus has read one: it was deleted outside SPIKE", nil
		}
		return nil, "", nil
	}
	m, err := p.unsealManifest(ctx, sealed)
	switch {
	case fault.CodeOf(err) == fault.DataLoss:
		return nil, err.Error(), nil
	case err != nil:
		return nil, "", err
	case m.Generation != gen:
		return nil, fmt.Sprintf("the policy manifest is for generation %d but the policies are at generation %d: "+
			"the manifest was replayed or the generation edited outside SPIKE", m.Generation, gen), nil
	}
	p.mu.Lock()
	p.sawManifest = true
	p.mu.Unlock()
	return m, "", nil
}

// unsealManifest opens a sealed manifest. The one last opened (or sealed
// by nextManifest) is remembered with its sealed bytes: the same bytes
// again are not opened and decoded again. The manifest returned must not
// be modified.
func (p *Policies) unsealManifest(ctx context.Context, sealed []byte) (*manifest, error) {
	p.mu.RLock()
	known := p.manifest
	p.mu.RUnlock()
	if known != nil && bytes.Equal(known.sealed, sealed) {
		return known.m, nil
	}
	m, err := p.openManifestBytes(ctx, sealed)
	if err != nil {
		return nil, err
	}
	p.remember(sealed, m)
	return m, nil
}

// remember records m as the content of the sealed manifest sealed.
func (p *Policies) remember(sealed []byte, m *manifest) {
	k := &knownManifest{sealed: bytes.Clone(sealed), m: m}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.manifest = k
}

func (p *Policies) openManifestBytes(ctx context.Context, sealed []byte) (*manifest, error) {
	plain, err := p.keys.Open(ctx, sealed, envelope.PolicyManifestAAD(), "policy manifest")
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(plain, &m); err != nil || m.Policies == nil {
		return nil, fault.New(fault.DataLoss, "policy manifest failed authentication: its content does not decode")
	}
	return &m, nil
}

// nextManifest returns the store callback that writes the manifest after
// the policy called name was put (sealed: its new row) or deleted (sealed:
// nil).
func (p *Policies) nextManifest(ctx context.Context, name string, sealed []byte) policy.ManifestFunc {
	return func(old []byte, rows []policy.Record, gen int64) ([]byte, error) {
		m, err := p.baseManifest(ctx, name, old, rows, gen-1)
		if err != nil {
			return nil, err
		}
		if sealed == nil {
			delete(m.Policies, name)
		} else {
			m.Policies[name] = rowHash(sealed)
		}
		m.Generation = gen
		plain, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode policy manifest: %w", err)
		}
		next, err := p.keys.Seal(ctx, plain, envelope.PolicyManifestAAD())
		if err != nil {
			return nil, err
		}
		// These bytes open to m: the reload after the change need not open
		// them. Should the change not commit, they are never read.
		p.remember(next, m)
		return next, nil
	}
}

// baseManifest is the manifest a change to the policy called name builds
// on: the current one (of generation prev). When there is none yet, it
// adopts the rows that open, except name's. When the current one is
// forged or stale, or the absent one was deleted, it starts empty: every
// other policy then grants nothing until it is put again. Errors that
// prevent checking abort the change.
func (p *Policies) baseManifest(ctx context.Context, name string, old []byte, rows []policy.Record, prev int64) (*manifest, error) {
	fresh := &manifest{Policies: map[string]string{}}
	if old != nil {
		m, problem, err := p.openManifest(ctx, old, prev)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			p.log.Error("policy manifest replaced by one listing only the changed policy: "+problem, "policy", name)
			return fresh, nil
		}
		// A copy: m may be the remembered manifest, which is never modified.
		return &manifest{Generation: m.Generation, Policies: maps.Clone(m.Policies)}, nil
	}
	if _, problem, _ := p.openManifest(ctx, nil, prev); problem != "" {
		p.log.Error("policy manifest created listing only the changed policy: "+problem, "policy", name)
		return fresh, nil
	}
	adopted := &manifest{Policies: map[string]string{}}
	for _, row := range rows {
		if row.Name == name {
			continue
		}
		sp, err := p.open(ctx, row)
		switch {
		case fault.CodeOf(err) == fault.DataLoss:
			continue
		case err != nil:
			return nil, err
		case sp.Manifested:
			p.log.Error("policy manifest created listing only the changed policy: the manifest is missing, but policy "+
				row.Name+" was written while SPIKE kept one: the manifest was deleted outside SPIKE", "policy", name)
			return fresh, nil
		}
		adopted.Policies[row.Name] = rowHash(row.Sealed)
	}
	if len(adopted.Policies) > 0 {
		p.log.Info("policy manifest created: it adopts the policies written before SPIKE kept one", "adopted", len(adopted.Policies))
	}
	return adopted, nil
}

func sortRejected(r []Rejected) {
	slices.SortFunc(r, func(a, b Rejected) int { return strings.Compare(a.Name, b.Name) })
}
