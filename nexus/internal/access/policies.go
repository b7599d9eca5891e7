// Package access decides who may do what: it keeps the workload policies
// in memory (opened from their sealed rows and refreshed when any Nexus
// replica changes them), and it issues, verifies and revokes admin tokens.
package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
)

// Cache freshness: the generation is polled at least this often, and a
// cache not confirmed current for longer than maxStaleness is not trusted.
const (
	maxPollInterval = 500 * time.Millisecond
	maxStaleness    = 2 * time.Second
)

// StoredPolicy is the sealed content of a policy row.
type StoredPolicy struct {
	Name            string   `json:"name"`
	SPIFFEIDPattern string   `json:"spiffe_id_pattern"`
	PathPattern     string   `json:"path_pattern"`
	Permissions     []string `json:"permissions"`
	UpdatedBy       string   `json:"updated_by"`
	// Manifested is set on every policy sealed since SPIKE keeps a policy
	// manifest. Such a row without a manifest means that the manifest was
	// deleted outside SPIKE.
	Manifested bool `json:"manifested,omitempty"`
}

// PolicyStore is what Policies needs of the database. PutPolicy and
// DeletePolicy commit rec, the audit record of the request, with the
// change.
type PolicyStore interface {
	Policies(ctx context.Context) (policy.Records, error)
	PolicyGeneration(ctx context.Context) (int64, error)
	ListenPolicies(ctx context.Context, changed func())
	PutPolicy(ctx context.Context, rec *audit.Entry, name string, sealed []byte, manifest policy.ManifestFunc) (policy.Record, error)
	DeletePolicy(ctx context.Context, rec *audit.Entry, name string, manifest policy.ManifestFunc) error
}

// sealer is what Policies needs of envelope.Keys.
type sealer interface {
	Ready(ctx context.Context) error
	Open(ctx context.Context, sealed, aad []byte, what string) ([]byte, error)
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
}

// keysSealer seals with the active data key of envelope.Keys.
type keysSealer struct{ *envelope.Keys }

func (k keysSealer) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	key, err := k.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	return key.Seal(plaintext, aad)
}

// Policies caches the compiled policy set. Checks cost no database round
// trip; a change made through any replica reaches this one through
// LISTEN/NOTIFY at once, and through a generation poll (at least every
// 500ms) if notifications are lost. Fresh says whether the cache can be
// trusted right now.
//
// A policy grants only when its row opens (it is bound to its name) and
// the sealed policy manifest lists the SHA-256 of exactly that row (so a
// row deleted or replaced through SPIKE and put back with SQL grants
// nothing); see manifest.go.
type Policies struct {
	store PolicyStore
	keys  sealer
	log   *slog.Logger
	now   func() time.Time

	reload sync.Mutex // one reload at a time
	// warnedLegacy is set (under reload) once the warning about policies
	// accepted without a manifest was logged.
	warnedLegacy bool

	mu      sync.RWMutex
	set     *policy.Set
	invalid []string
	gen     int64
	loaded  bool
	// checked is when the loaded generation was last confirmed to be the
	// database's; seen is the highest generation read from the database.
	checked time.Time
	seen    int64
	// sawManifest is set once this process has read a valid manifest: from
	// then on a missing manifest is tampering, not an old schema.
	sawManifest bool
	// lastFailure is the last refresh failure logged, so that a failure
	// that persists is logged once, not at every poll.
	lastFailure string
	// opened holds, for each row of the last reload that passed
	// authentication (it opened and the manifest listed it), its content
	// and compiled policy, by name and SHA-256 of its sealed bytes: a
	// reload then opens and compiles only the rows that changed, not all
	// of them at every change. It never stands in for the manifest check,
	// only for opening a row that check accepted. Reload replaces the
	// whole map (built from the rows it accepted, so deleted rows leave
	// it); a map is never modified once stored.
	opened map[rowKey]openedRow
	// manifest is the last policy manifest that opened (or that this
	// process sealed), with its sealed bytes; never modified once stored.
	manifest *knownManifest
}

// rowKey names a policy row by name and the SHA-256 of its sealed bytes.
type rowKey struct{ name, hash string }

// openedRow is a policy row that passed authentication, opened and
// compiled.
type openedRow struct {
	sp StoredPolicy
	// pol is sp compiled; compileErr is set instead when it does not compile.
	pol        policy.Policy
	compileErr error
}

// NewPolicies returns an empty cache: it grants nothing until loaded.
func NewPolicies(store PolicyStore, keys *envelope.Keys, log *slog.Logger) *Policies {
	return newPolicies(store, keysSealer{keys}, log, time.Now)
}

func newPolicies(store PolicyStore, keys sealer, log *slog.Logger, now func() time.Time) *Policies {
	return &Policies{store: store, keys: keys, log: log, now: now, set: policy.NewSet(nil)}
}

// Set returns the current policy set.
func (p *Policies) Set() *policy.Set {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.set
}

// Invalid returns the names of stored policies that grant nothing because
// they failed authentication, sorted.
func (p *Policies) Invalid() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.invalid
}

// Fresh returns nil when the cached set may be trusted: it is loaded, no
// newer generation has been seen, and the database confirmed its
// generation within the last 2 seconds. Otherwise it returns a
// fault.Unavailable error (clients retry those).
func (p *Policies) Fresh() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch age := p.now().Sub(p.checked); {
	case !p.loaded:
		return fault.New(fault.Unavailable, "policy cache is stale: policies are not loaded yet")
	case p.seen > p.gen:
		return fault.New(fault.Unavailable, "policy cache is stale: generation %d exists, %d is loaded", p.seen, p.gen)
	case age > maxStaleness:
		return fault.New(fault.Unavailable, "policy cache is stale: the policy generation was last confirmed %s ago",
			age.Round(time.Millisecond))
	}
	return nil
}

// EnsureFresh returns nil when the cache is current, reloading it first
// when it is not (right after start or unseal, or a missed change), and the
// reason it cannot be trusted otherwise.
func (p *Policies) EnsureFresh(ctx context.Context) error {
	if p.Fresh() == nil {
		return nil
	}
	if err := p.Reload(ctx); err != nil {
		p.log.Debug("reload on demand failed", "error", err.Error())
	}
	return p.Fresh()
}

// Run keeps the cache fresh until ctx is done: it reloads on every
// notification, and polls the policy generation every interval, at most
// 500ms (which also loads the policies once SPIKE is unsealed).
func (p *Policies) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 || interval > maxPollInterval {
		interval = maxPollInterval
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// A notification reloads only when the generation is not the loaded
	// one: this replica's own changes are loaded already by the caller.
	wg.Go(func() {
		p.store.ListenPolicies(ctx, func() { p.refreshIfStale(ctx) })
	})
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.refreshIfStale(ctx)
		}
	}
}

// refreshIfStale reads the policy generation: when it is the loaded one,
// the cache is confirmed current; otherwise it reloads.
func (p *Policies) refreshIfStale(ctx context.Context) {
	start := p.now()
	gen, err := p.store.PolicyGeneration(ctx)
	if err != nil {
		p.logFailure(err)
		return
	}
	p.mu.Lock()
	p.seen = max(p.seen, gen)
	current := p.loaded && p.gen == gen && p.seen == gen
	if current {
		p.checked = later(p.checked, start)
		p.lastFailure = ""
	}
	p.mu.Unlock()
	if !current {
		p.refresh(ctx)
	}
}

func (p *Policies) refresh(ctx context.Context) {
	if err := p.Reload(ctx); err != nil {
		p.logFailure(err)
	}
}

func (p *Policies) logFailure(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	p.mu.Lock()
	msg := err.Error()
	repeated := msg == p.lastFailure
	p.lastFailure = msg
	p.mu.Unlock()
	if !repeated {
		p.log.Info("policies not loaded", "error", msg)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Reload reads and authenticates every stored policy and replaces the
// cached set. A policy that fails authentication grants nothing and is
// reported; any other error (database or Keeper unavailable, SPIKE sealed,
// context done) aborts the reload and leaves the cache as it was, stale
// until a later reload succeeds (see Fresh).
func (p *Policies) Reload(ctx context.Context) error {
	p.reload.Lock()
	defer p.reload.Unlock()
	start := p.now()
	snap, err := p.Read(ctx)
	if err != nil {
		return err
	}
	if snap.Problem != "" {
		p.log.Error("no policy grants anything: "+snap.Problem, "generation", snap.Generation)
	}
	var compiled []policy.Policy
	p.mu.RLock()
	prev := p.opened
	p.mu.RUnlock()
	opened := make(map[rowKey]openedRow, len(snap.Valid))
	invalid := make([]string, 0, len(snap.Invalid))
	for _, r := range snap.Invalid {
		invalid = append(invalid, r.Name)
		if snap.Problem == "" {
			p.log.Warn("policy failed authentication and grants nothing", "policy", r.Name, "reason", r.Reason)
		}
	}
	for _, o := range snap.Valid {
		key := rowKey{o.Name, o.hash}
		c, ok := prev[key]
		if !ok {
			c.sp = o.StoredPolicy
			c.pol, c.compileErr = policy.New(o.Name, o.SPIFFEIDPattern, o.PathPattern, o.Permissions)
		}
		opened[key] = c
		if c.compileErr != nil {
			invalid = append(invalid, o.Name)
			p.log.Warn("policy does not compile and grants nothing", "policy", o.Name, "error", c.compileErr.Error())
			continue
		}
		compiled = append(compiled, c.pol)
	}
	slices.Sort(invalid)
	if snap.Legacy && len(snap.Valid) > 0 && !p.warnedLegacy {
		p.warnedLegacy = true
		p.log.Warn("policies are accepted without a policy manifest (they were written before SPIKE kept one): " +
			"the next policy change creates it; until then a policy deleted and put back with SQL would grant again")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded || p.gen != snap.Generation {
		p.log.Info("policies loaded", "policies", len(compiled), "invalid", len(invalid), "generation", snap.Generation)
	}
	p.set, p.invalid, p.gen, p.loaded = policy.NewSet(compiled), invalid, snap.Generation, true
	p.opened = opened
	p.checked = later(p.checked, start)
	p.lastFailure = ""
	return nil
}

// Get returns the stored policy called name if it passes authentication.
// A policy that does not is a fault.DataLoss error.
func (p *Policies) Get(ctx context.Context, name string) (Opened, error) {
	snap, err := p.Read(ctx)
	if err != nil {
		return Opened{}, err
	}
	for _, o := range snap.Valid {
		if o.Name == name {
			return o, nil
		}
	}
	for _, r := range snap.Invalid {
		if r.Name == name {
			return Opened{}, fault.New(fault.DataLoss,
				"policy %s failed authentication: it was edited, inserted or replayed outside SPIKE and grants nothing", name)
		}
	}
	return Opened{}, fault.New(fault.NotFound, "policy %s not found", name)
}

// Put seals sp and stores it, updating the policy manifest in the same
// transaction, which also commits rec. The caller reloads the cache
// (Reload) afterwards.
func (p *Policies) Put(ctx context.Context, rec *audit.Entry, sp StoredPolicy) (policy.Record, error) {
	if err := p.keys.Ready(ctx); err != nil {
		return policy.Record{}, err
	}
	sp.Manifested = true
	plain, err := json.Marshal(sp)
	if err != nil {
		return policy.Record{}, fmt.Errorf("encode policy: %w", err)
	}
	sealed, err := p.keys.Seal(ctx, plain, envelope.PolicyAAD(sp.Name))
	if err != nil {
		return policy.Record{}, err
	}
	return p.store.PutPolicy(ctx, rec, sp.Name, sealed, p.nextManifest(ctx, sp.Name, sealed))
}

// Delete deletes the policy called name, updating the policy manifest in
// the same transaction, which also commits rec. The caller reloads the
// cache afterwards.
func (p *Policies) Delete(ctx context.Context, rec *audit.Entry, name string) error {
	if err := p.keys.Ready(ctx); err != nil {
		return err
	}
	return p.store.DeletePolicy(ctx, rec, name, p.nextManifest(ctx, name, nil))
}

// openKnown is open for a row whose sealed bytes hash to hash, answered
// from cache (see Policies.opened) when the row passed authentication
// before.
func (p *Policies) openKnown(ctx context.Context, cache map[rowKey]openedRow, row policy.Record, hash string) (StoredPolicy, error) {
	if c, ok := cache[rowKey{row.Name, hash}]; ok {
		sp := c.sp
		sp.Permissions = slices.Clone(sp.Permissions)
		return sp, nil
	}
	return p.open(ctx, row)
}

// open opens a policy row, checking that its content names the row. A row
// that does not authenticate or decode is a fault.DataLoss error; any other
// error means it could not be checked.
func (p *Policies) open(ctx context.Context, row policy.Record) (StoredPolicy, error) {
	plain, err := p.keys.Open(ctx, row.Sealed, envelope.PolicyAAD(row.Name), "policy "+row.Name)
	if err != nil {
		return StoredPolicy{}, err
	}
	var sp StoredPolicy
	if err := json.Unmarshal(plain, &sp); err != nil || sp.Name != row.Name {
		return StoredPolicy{}, fault.New(fault.DataLoss, "policy %s failed authentication: its content does not decode", row.Name)
	}
	return sp, nil
}
