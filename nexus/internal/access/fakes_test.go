package access

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/shared/testkit/logtest"
)

// fakeStore keeps policies in memory the way postgres.Store does: every
// change bumps the generation and rewrites the manifest atomically. Direct
// edits (insert, set) play the attacker with access to the database.
type fakeStore struct {
	mu       sync.Mutex
	rows     map[string]policy.Record
	gen      int64
	manifest []byte
	// err, when set, fails every read.
	err error
}

func newFakeStore() *fakeStore { return &fakeStore{rows: map[string]policy.Record{}} }

func sortedRows(rows map[string]policy.Record) []policy.Record {
	var out []policy.Record
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		out = append(out, rows[name])
	}
	return out
}

func (s *fakeStore) Policies(context.Context) (policy.Records, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return policy.Records{}, s.err
	}
	return policy.Records{Rows: sortedRows(s.rows), Generation: s.gen, Manifest: s.manifest}, nil
}

func (s *fakeStore) PolicyGeneration(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.err
}

func (s *fakeStore) ListenPolicies(ctx context.Context, _ func()) { <-ctx.Done() }

// errNoRecord is the fake's refusal of a change without its audit record,
// as the real store refuses it.
var errNoRecord = errors.New("a change without its audit record")

func (s *fakeStore) PutPolicy(_ context.Context, rec *audit.Entry, name string, sealed []byte, manifest policy.ManifestFunc) (policy.Record, error) {
	if rec == nil {
		return policy.Record{}, errNoRecord
	}
	row := policy.Record{Name: name, Sealed: sealed}
	err := s.change(manifest, func(rows map[string]policy.Record) error {
		rows[name] = row
		return nil
	})
	return row, err
}

func (s *fakeStore) DeletePolicy(_ context.Context, rec *audit.Entry, name string, manifest policy.ManifestFunc) error {
	if rec == nil {
		return errNoRecord
	}
	return s.change(manifest, func(rows map[string]policy.Record) error {
		if _, ok := rows[name]; !ok {
			return fault.New(fault.NotFound, "policy %s not found", name)
		}
		delete(rows, name)
		return nil
	})
}

func (s *fakeStore) change(manifest policy.ManifestFunc, apply func(map[string]policy.Record) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := maps.Clone(s.rows)
	if err := apply(rows); err != nil {
		return err
	}
	next, err := manifest(s.manifest, sortedRows(rows), s.gen+1)
	if err != nil {
		return err
	}
	s.rows, s.gen, s.manifest = rows, s.gen+1, next
	return nil
}

// row returns the stored bytes of a policy row, as an attacker would save them.
func (s *fakeStore) row(t *testing.T, name string) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[name]
	if !ok {
		t.Fatalf("no row %s", name)
	}
	return bytes.Clone(r.Sealed)
}

// insert writes a policy row directly, as SQL would: no generation bump,
// no manifest change.
func (s *fakeStore) insert(name string, sealed []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[name] = policy.Record{Name: name, Sealed: sealed}
}

func (s *fakeStore) set(f func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// fakeKeys seals with one AES-GCM key, like envelope.Keys with one data key.
type fakeKeys struct {
	aead cipher.AEAD

	mu sync.Mutex
	// err, when set, fails Open and Seal (Keeper unavailable, sealed...).
	err error
	// opens counts the calls to Open by what they open.
	opens map[string]int
}

func newFakeKeys(t testing.TB) *fakeKeys {
	t.Helper()
	key := make([]byte, envelope.KeySize)
	_, _ = rand.Read(key)
	aead, err := envelope.NewAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeKeys{aead: aead}
}

func (k *fakeKeys) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.err = err
}

func (k *fakeKeys) failure() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

func (k *fakeKeys) Ready(context.Context) error { return nil }

// policyOpens returns how many times a policy row and the manifest were
// opened since the last call.
func (k *fakeKeys) policyOpens() (rows, manifests int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for what, n := range k.opens {
		if what == "policy manifest" {
			manifests += n
		} else if strings.HasPrefix(what, "policy ") {
			rows += n
		}
	}
	k.opens = nil
	return rows, manifests
}

func (k *fakeKeys) Open(_ context.Context, sealed, aad []byte, what string) ([]byte, error) {
	k.mu.Lock()
	if k.opens == nil {
		k.opens = map[string]int{}
	}
	k.opens[what]++
	k.mu.Unlock()
	if err := k.failure(); err != nil {
		return nil, err
	}
	plain, err := envelope.Open(k.aead, sealed, aad)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	return plain, nil
}

func (k *fakeKeys) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := k.failure(); err != nil {
		return nil, err
	}
	return envelope.Seal(k.aead, envelope.DEKID{1}, plaintext, aad)
}

// sealPolicy seals sp for its row as SPIKE would, without the manifest flag
// unless sp sets it: a policy written by an older SPIKE.
func (k *fakeKeys) sealPolicy(t testing.TB, sp StoredPolicy) []byte {
	t.Helper()
	plain, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal(t.Context(), plain, envelope.PolicyAAD(sp.Name))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

type fixture struct {
	*Policies
	store *fakeStore
	keys  *fakeKeys
	clock *clock
	logs  *logtest.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, keys := newFakeStore(), newFakeKeys(t)
	return newFixtureOn(store, keys)
}

// newFixtureOn is another Nexus process on the same database and keys.
func newFixtureOn(store *fakeStore, keys *fakeKeys) *fixture {
	f := &fixture{store: store, keys: keys, clock: newClock(), logs: &logtest.Buffer{}}
	f.Policies = newPolicies(store, keys, slog.New(slog.NewTextHandler(f.logs, nil)), f.clock.now)
	return f
}

// storedPolicy is a policy granting the workload named like it read on apps/**.
func storedPolicy(name string) StoredPolicy {
	return StoredPolicy{
		Name:            name,
		SPIFFEIDPattern: "spiffe://spike.local/app/" + name,
		PathPattern:     "apps/**",
		Permissions:     []string{"read"},
	}
}

// put stores policy name through the API path and reloads.
func (f *fixture) put(t *testing.T, name string) {
	t.Helper()
	if _, err := f.Put(t.Context(), audittest.Record(t, nil), storedPolicy(name)); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	f.reload(t)
}

func (f *fixture) remove(t *testing.T, name string) {
	t.Helper()
	if err := f.Delete(t.Context(), audittest.Record(t, nil), name); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
	f.reload(t)
}

func (f *fixture) reload(t *testing.T) {
	t.Helper()
	if err := f.Reload(t.Context()); err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// granting returns the policies (by name) that grant their workload read
// access, of names.
func (f *fixture) granting(names ...string) []string {
	set := f.Set()
	var out []string
	for _, name := range names {
		id := spiffeid.RequireFromString("spiffe://spike.local/app/" + name)
		if set.Allowed(id, "apps/x").Has(policy.Read) {
			out = append(out, name)
		}
	}
	return out
}
