package access

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
)

// wantOpens checks how many policy rows and manifests f's keys opened since
// the last check.
func (f *fixture) wantOpens(t *testing.T, what string, rows, manifests int) {
	t.Helper()
	gotRows, gotManifests := f.keys.policyOpens()
	if gotRows != rows || gotManifests != manifests {
		t.Errorf("%s opened %d policy rows and %d manifests, want %d and %d", what, gotRows, gotManifests, rows, manifests)
	}
}

func TestReloadOpensOnlyChangedRows(t *testing.T) {
	t.Parallel()
	const n = 20
	f := newFixture(t)
	names := make([]string, 0, n+2)
	for i := range n {
		names = append(names, fmt.Sprintf("p%02d", i))
		f.put(t, names[i])
	}
	f.keys.policyOpens()

	// One more policy: its row is opened, the others come from the cache,
	// and the manifest this process sealed is not opened again.
	names = append(names, "new")
	f.put(t, "new")
	f.wantOpens(t, "a put and reload", 1, 0)
	f.wantState(t, names, names, []string{})
	f.reload(t)
	f.wantOpens(t, "a reload without a change", 0, 0)
	if _, err := f.Get(t.Context(), "p03"); err != nil {
		t.Fatal(err)
	}
	f.wantOpens(t, "a get", 0, 0)

	// Another process opens everything once; then only what changes.
	other := newFixtureOn(f.store, f.keys)
	other.reload(t)
	f.wantOpens(t, "a first reload", n+1, 1)
	other.wantState(t, names, names, []string{})
	f.put(t, "p05")
	f.wantOpens(t, "an update", 1, 0)
	other.reload(t)
	f.wantOpens(t, "a reload after another process's update", 1, 1)
	other.wantState(t, names, names, []string{})

	// A deleted row leaves the cache.
	f.remove(t, "p07")
	if len(f.opened) != n {
		t.Errorf("cache holds %d rows after a delete, want %d", len(f.opened), n)
	}
	for k := range f.opened {
		if k.name == "p07" {
			t.Error("the deleted policy is still cached")
		}
	}
}

// A row that this process opened and cached, put back with SQL after
// another replica replaced it, grants nothing: the cache does not stand
// in for the manifest.
func TestCachedRowReplayedGrantsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	names := []string{"a", "b"}
	f.put(t, "a")
	f.put(t, "b")
	saved := f.store.row(t, "a")
	if _, ok := f.opened[rowKey{"a", rowHash(saved)}]; !ok {
		t.Fatal("row a is not cached")
	}
	// Another replica narrows a; the old, wider row is put back before
	// this process reloads.
	narrow := storedPolicy("a")
	narrow.PathPattern = "apps/a/**"
	if _, err := newFixtureOn(f.store, f.keys).Put(t.Context(), audittest.Record(t, nil), narrow); err != nil {
		t.Fatal(err)
	}
	f.store.insert("a", saved)
	f.keys.policyOpens()
	f.reload(t)
	f.wantState(t, names, []string{"b"}, []string{"a"})
	f.wantOpens(t, "the reload", 0, 1)
	snap, err := f.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Invalid) != 1 || !strings.Contains(snap.Invalid[0].Reason, "manifest does not list it") {
		t.Errorf("invalid = %+v", snap.Invalid)
	}
	if _, ok := f.opened[rowKey{"a", rowHash(saved)}]; ok {
		t.Error("the refused row is still cached")
	}
	// Another process agrees.
	fresh := newFixtureOn(f.store, f.keys)
	fresh.reload(t)
	fresh.wantState(t, names, []string{"b"}, []string{"a"})
}

// The cache is keyed by name too: without a manifest, a cached row copied
// under another name does not open for it.
func TestCachedRowCopiedGrantsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	names := []string{"a", "copied"}
	f.store.insert("a", f.keys.sealPolicy(t, storedPolicy("a")))
	f.reload(t)
	f.store.insert("copied", f.store.row(t, "a"))
	f.reload(t)
	f.wantState(t, names, []string{"a"}, []string{"copied"})
}

// Reads run while reloads replace the cache (go test -race).
func TestCacheConcurrentReads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "a")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := f.Get(t.Context(), "a"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 20 {
		f.put(t, fmt.Sprintf("p%02d", i))
	}
	wg.Wait()
	if _, err := f.Get(t.Context(), "p19"); err != nil {
		t.Fatal(err)
	}
}
