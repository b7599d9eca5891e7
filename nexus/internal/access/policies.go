// Package access decides who may do what: it keeps the workload policies
// in memory (opened from their sealed rows and refreshed when any Nexus
// replica changes them), and it issues, verifies and revokes admin tokens.
package access

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// StoredPolicy is the sealed content of a policy row.
type StoredPolicy struct {
	Name            string   `json:"name"`
	SPIFFEIDPattern string   `json:"spiffe_id_pattern"`
	PathPattern     string   `json:"path_pattern"`
	Permissions     []string `json:"permissions"`
	UpdatedBy       string   `json:"updated_by"`
}

// Policies caches the compiled policy set. Checks cost no database round
// trip; a change made through any replica reaches this one through
// LISTEN/NOTIFY at once, and through a generation poll within one interval
// if notifications are lost.
type Policies struct {
	store *postgres.Store
	keys  *envelope.Keys
	log   *slog.Logger

	reload sync.Mutex // one reload at a time

	mu      sync.RWMutex
	set     *policy.Set
	invalid []string
	gen     int64
	loaded  bool
}

// NewPolicies returns an empty cache: it grants nothing until loaded.
func NewPolicies(store *postgres.Store, keys *envelope.Keys, log *slog.Logger) *Policies {
	return &Policies{store: store, keys: keys, log: log, set: policy.NewSet(nil)}
}

// Set returns the current policy set.
func (p *Policies) Set() *policy.Set {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.set
}

// Invalid returns the names of stored policies that failed authentication.
func (p *Policies) Invalid() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.invalid
}

// Run keeps the cache fresh until ctx is done: it reloads on every
// notification, and polls the policy generation every interval (which also
// loads the policies once SPIKE is unsealed).
func (p *Policies) Run(ctx context.Context, interval time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		p.store.ListenPolicies(ctx, func() { p.refresh(ctx) })
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

func (p *Policies) refreshIfStale(ctx context.Context) {
	gen, err := p.store.PolicyGeneration(ctx)
	if err != nil {
		return
	}
	p.mu.RLock()
	fresh := p.loaded && p.gen == gen
	p.mu.RUnlock()
	if !fresh {
		p.refresh(ctx)
	}
}

func (p *Policies) refresh(ctx context.Context) {
	if err := p.Reload(ctx); err != nil {
		p.log.Info("policies not loaded", "error", err.Error())
	}
}

// Reload reads and opens every stored policy and replaces the cached set.
// A policy that fails authentication grants nothing and is reported.
func (p *Policies) Reload(ctx context.Context) error {
	p.reload.Lock()
	defer p.reload.Unlock()
	if err := p.keys.Ready(ctx); err != nil {
		return err
	}
	rows, gen, err := p.store.Policies(ctx)
	if err != nil {
		return err
	}
	var (
		compiled []policy.Policy
		invalid  []string
	)
	for _, row := range rows {
		sp, err := p.Open(ctx, row)
		if err == nil {
			var pol policy.Policy
			pol, err = policy.New(sp.Name, sp.SPIFFEIDPattern, sp.PathPattern, sp.Permissions)
			if err == nil {
				compiled = append(compiled, pol)
				continue
			}
		}
		invalid = append(invalid, row.Name)
		p.log.Warn("policy failed authentication and grants nothing: it was edited or inserted outside SPIKE",
			"policy", row.Name, "error", err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded || p.gen != gen {
		p.log.Info("policies loaded", "policies", len(compiled), "invalid", len(invalid), "generation", gen)
	}
	p.set, p.invalid, p.gen, p.loaded = policy.NewSet(compiled), invalid, gen, true
	return nil
}

// Open opens a policy row, checking that its content names the row.
func (p *Policies) Open(ctx context.Context, row postgres.PolicyRow) (StoredPolicy, error) {
	plain, err := p.keys.Open(ctx, row.Sealed, envelope.PolicyAAD(row.Name), "policy "+row.Name)
	if err != nil {
		return StoredPolicy{}, err
	}
	var sp StoredPolicy
	if err := json.Unmarshal(plain, &sp); err != nil || sp.Name != row.Name {
		return StoredPolicy{}, fmt.Errorf("policy %s does not decode", row.Name)
	}
	return sp, nil
}

// Seal seals a policy's content for its row.
func (p *Policies) Seal(ctx context.Context, sp StoredPolicy) ([]byte, error) {
	plain, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	key, err := p.keys.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	return key.Seal(plain, envelope.PolicyAAD(sp.Name))
}
