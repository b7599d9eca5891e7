package access

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
)

// wantState checks which of names grant and which stored policies are
// reported invalid.
func (f *fixture) wantState(t *testing.T, names []string, granting, invalid []string) {
	t.Helper()
	if diff := cmp.Diff(granting, f.granting(names...)); diff != "" {
		t.Errorf("granting policies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(invalid, f.Invalid()); diff != "" {
		t.Errorf("invalid policies (-want +got):\n%s", diff)
	}
}

func wantFault(t *testing.T, err error, code fault.Code, msg string) {
	t.Helper()
	if fault.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error = %v (code %d), want code %d containing %q", err, fault.CodeOf(err), code, msg)
	}
}

func TestReplayedPolicyRowGrantsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	all := []string{"a", "b", "c"}
	f.put(t, "a")
	f.put(t, "b")
	saved := f.store.row(t, "a")
	f.remove(t, "a")
	f.wantState(t, all, []string{"b"}, []string{})

	// Put back with SQL: it opens (it is bound to its name), but the
	// manifest does not list it.
	f.store.insert("a", saved)
	f.put(t, "c")
	f.wantState(t, all, []string{"b", "c"}, []string{"a"})
	_, err := f.Get(t.Context(), "a")
	wantFault(t, err, fault.DataLoss, "policy a failed authentication")
	snap, err := f.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Invalid) != 1 || !strings.Contains(snap.Invalid[0].Reason, "manifest does not list it") {
		t.Errorf("invalid = %+v", snap.Invalid)
	}
	if strings.Count(f.logs.String(), "policy failed authentication and grants nothing") == 0 {
		t.Error("the replayed policy was not reported in the log")
	}

	// Another process on the same database sees the same.
	other := newFixtureOn(f.store, f.keys)
	other.reload(t)
	other.wantState(t, all, []string{"b", "c"}, []string{"a"})

	// Putting it again through the API makes it grant again.
	f.put(t, "a")
	f.wantState(t, all, all, []string{})
}

func TestOlderPolicyRowGrantsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "a")
	saved := f.store.row(t, "a")
	// Narrow it: the path pattern no longer covers apps/x.
	narrow := storedPolicy("a")
	narrow.PathPattern = "apps/a/**"
	if _, err := f.Put(t.Context(), audittest.Record(t, nil), narrow); err != nil {
		t.Fatal(err)
	}
	f.reload(t)
	f.wantState(t, []string{"a"}, nil, []string{})
	// Restoring the older, wider row does not bring it back.
	f.store.insert("a", saved)
	f.put(t, "b")
	f.wantState(t, []string{"a", "b"}, []string{"b"}, []string{"a"})
}

func TestForgedAndCopiedRowsGrantNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "a")
	f.store.insert("copied", f.store.row(t, "a"))
	f.store.insert("forged", []byte(`{"name":"forged","spiffe_id_pattern":"spiffe://spike.local/app/forged","path_pattern":"**","permissions":["read"]}`))
	f.put(t, "b")
	f.wantState(t, []string{"a", "b", "copied", "forged"}, []string{"a", "b"}, []string{"copied", "forged"})
}

func TestReplayedOrForgedManifestGrantsNothing(t *testing.T) {
	t.Parallel()
	all := []string{"a", "b", "c", "d"}
	for _, tt := range []struct {
		name   string
		tamper func(f *fixture, oldManifest []byte)
		reason string
	}{
		{"older manifest", func(f *fixture, old []byte) {
			f.store.set(func(s *fakeStore) { s.manifest = old })
		}, "the policy manifest is for generation 2 but the policies are at generation 3"},
		{"generation bumped", func(f *fixture, _ []byte) {
			f.store.set(func(s *fakeStore) { s.gen++ })
		}, "the policy manifest is for generation 3 but the policies are at generation 4"},
		{"forged manifest", func(f *fixture, _ []byte) {
			f.store.set(func(s *fakeStore) { s.manifest = []byte(`{"generation":3,"policies":{}}`) })
		}, "policy manifest failed authentication"},
		{"manifest deleted", func(f *fixture, _ []byte) {
			f.store.set(func(s *fakeStore) { s.manifest = nil })
		}, "the policy manifest is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.put(t, "a")
			f.put(t, "b")
			old := f.store.manifest
			f.put(t, "c")
			tt.tamper(f, old)
			f.reload(t)
			f.wantState(t, all, nil, []string{"a", "b", "c"})
			if strings.Count(f.logs.String(), tt.reason) == 0 {
				t.Errorf("log does not say %q:\n%s", tt.reason, f.logs.String())
			}
			// A process started afterwards grants nothing either.
			other := newFixtureOn(f.store, f.keys)
			other.reload(t)
			other.wantState(t, all, nil, []string{"a", "b", "c"})

			// The next change does not build on the tampered manifest: it
			// starts a new one listing only the changed policy.
			f.put(t, "d")
			f.wantState(t, all, []string{"d"}, []string{"a", "b", "c"})
			f.put(t, "a")
			f.wantState(t, all, []string{"a", "d"}, []string{"b", "c"})
		})
	}
}

func TestPoliciesWithoutManifest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	all := []string{"a", "b", "c", "d", "forged"}
	// A database from before the manifest: rows that open, and a forged one.
	f.store.insert("a", f.keys.sealPolicy(t, storedPolicy("a")))
	f.store.insert("b", f.keys.sealPolicy(t, storedPolicy("b")))
	f.store.insert("forged", []byte("forged"))
	f.reload(t)
	f.reload(t)
	f.wantState(t, all, []string{"a", "b"}, []string{"forged"})
	if n := strings.Count(f.logs.String(), "accepted without a policy manifest"); n != 1 {
		t.Errorf("legacy warning logged %d times, want once", n)
	}

	// The first change creates the manifest; it adopts the rows that open.
	f.put(t, "c")
	f.wantState(t, all, []string{"a", "b", "c"}, []string{"forged"})
	if f.store.manifest == nil {
		t.Fatal("no manifest after a policy change")
	}
	// From now on a replay of a deleted policy grants nothing.
	saved := f.store.row(t, "a")
	f.remove(t, "a")
	f.store.insert("a", saved)
	f.put(t, "d")
	f.wantState(t, all, []string{"b", "c", "d"}, []string{"a", "forged"})

	// Deleting the manifest does not bring back the old rules: this
	// process has seen one, and a new process finds rows written under one.
	f.store.set(func(s *fakeStore) { s.manifest = nil })
	f.reload(t)
	f.wantState(t, all, nil, []string{"a", "b", "c", "d", "forged"})
	other := newFixtureOn(f.store, f.keys)
	other.reload(t)
	other.wantState(t, all, nil, []string{"a", "b", "c", "d", "forged"})
	// Nor does the next change adopt them.
	other.put(t, "b")
	other.wantState(t, all, []string{"b"}, []string{"a", "c", "d", "forged"})
}

func TestReloadKeepsCacheOnTransientErrors(t *testing.T) {
	t.Parallel()
	for _, transient := range []error{
		fault.New(fault.Unavailable, "Keeper is unavailable"),
		fault.New(fault.FailedPrecondition, "SPIKE is sealed"),
		context.DeadlineExceeded,
		errors.New("read policies: permission denied for table policies"),
	} {
		t.Run(transient.Error(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			all := []string{"a", "b"}
			f.put(t, "a")
			// Another replica adds b, then Keeper fails.
			newFixtureOn(f.store, f.keys).put(t, "b")
			f.keys.fail(transient)
			if err := f.Reload(t.Context()); !errors.Is(err, transient) {
				t.Fatalf("Reload = %v, want %v", err, transient)
			}
			// Nothing was marked invalid and the generation was not taken
			// as loaded: the cache is reported stale and reloads later.
			f.wantState(t, all, []string{"a"}, []string{})
			wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale: generation 2 exists, 1 is loaded")
			f.refreshIfStale(t.Context())
			f.wantState(t, all, []string{"a"}, []string{})

			f.keys.fail(nil)
			f.refreshIfStale(t.Context())
			f.wantState(t, all, all, []string{})
			if err := f.Fresh(); err != nil {
				t.Errorf("Fresh after reload: %v", err)
			}

			// The same for the database.
			f.store.set(func(s *fakeStore) { s.err = transient })
			if err := f.Reload(t.Context()); !errors.Is(err, transient) {
				t.Fatalf("Reload = %v, want %v", err, transient)
			}
			f.wantState(t, all, all, []string{})
		})
	}
}

func TestUndecodablePoliciesAreInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := storedPolicy("bad-pattern")
	bad.PathPattern = "apps/a**"
	f.store.insert("bad-pattern", f.keys.sealPolicy(t, bad))
	// Sealed for their rows, but not a policy, or another policy.
	junk, err := f.keys.Seal(t.Context(), []byte("not json"), envelope.PolicyAAD("junk"))
	if err != nil {
		t.Fatal(err)
	}
	f.store.insert("junk", junk)
	plain, err := json.Marshal(storedPolicy("b"))
	if err != nil {
		t.Fatal(err)
	}
	renamed, err := f.keys.Seal(t.Context(), plain, envelope.PolicyAAD("renamed"))
	if err != nil {
		t.Fatal(err)
	}
	f.store.insert("renamed", renamed)
	f.store.insert("a", f.keys.sealPolicy(t, storedPolicy("a")))
	f.reload(t)
	f.wantState(t, []string{"a", "b", "bad-pattern", "junk", "renamed"}, []string{"a"}, []string{"bad-pattern", "junk", "renamed"})
}

func TestFresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale: policies are not loaded yet")
	f.put(t, "a")
	if err := f.Fresh(); err != nil {
		t.Fatalf("Fresh after load: %v", err)
	}
	f.clock.advance(maxStaleness)
	if err := f.Fresh(); err != nil {
		t.Fatalf("Fresh after 2s: %v", err)
	}
	f.clock.advance(time.Millisecond)
	wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale: the policy generation was last confirmed 2.001s ago")

	// A successful check confirms the cache without reloading it.
	f.refreshIfStale(t.Context())
	if err := f.Fresh(); err != nil {
		t.Fatalf("Fresh after a check: %v", err)
	}
	// A failing check does not.
	f.store.set(func(s *fakeStore) { s.err = fault.New(fault.Unavailable, "database unavailable") })
	for range 5 {
		f.clock.advance(500 * time.Millisecond)
		f.refreshIfStale(t.Context())
	}
	wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale: the policy generation was last confirmed 2.5s ago")
	if n := strings.Count(f.logs.String(), "database unavailable"); n != 1 {
		t.Errorf("a persisting failure was logged %d times, want once", n)
	}
	f.store.set(func(s *fakeStore) { s.err = nil })
	f.refreshIfStale(t.Context())
	if err := f.Fresh(); err != nil {
		t.Fatalf("Fresh after the database is back: %v", err)
	}
}

func TestGenerationGoingBackIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "a")
	old := f.store.manifest
	oldRows := map[string][]byte{"a": f.store.row(t, "a")}
	f.remove(t, "a")
	// Restore the policy tables as they were at generation 1.
	f.store.set(func(s *fakeStore) { s.gen, s.manifest = 1, old })
	f.store.insert("a", oldRows["a"])
	err := f.Reload(t.Context())
	wantFault(t, err, fault.DataLoss, "policy generation went back from 2 to 1")
	f.wantState(t, []string{"a"}, nil, []string{})
	f.clock.advance(maxStaleness + time.Millisecond)
	f.refreshIfStale(t.Context())
	wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale")
}

func TestRunPollsAtLeastEveryHalfSecond(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store, keys := newFakeStore(), newFakeKeys(t)
		f := newFixtureOn(store, keys)
		f.now = time.Now // the bubble's clock
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); f.Run(ctx, time.Minute) }()

		time.Sleep(maxPollInterval + time.Millisecond)
		if err := f.Fresh(); err != nil {
			t.Fatalf("Fresh after the first poll: %v", err)
		}
		// A change that no notification announces is loaded at the next poll.
		newFixtureOn(store, keys).put(t, "a")
		time.Sleep(maxPollInterval)
		if diff := cmp.Diff([]string{"a"}, f.granting("a")); diff != "" {
			t.Errorf("granting after a poll (-want +got):\n%s", diff)
		}
		// Polls keep confirming the cache.
		time.Sleep(10 * time.Second)
		if err := f.Fresh(); err != nil {
			t.Fatalf("Fresh while polling: %v", err)
		}
		// When the database stops answering, the cache goes stale.
		store.set(func(s *fakeStore) { s.err = fault.New(fault.Unavailable, "database unavailable") })
		time.Sleep(maxStaleness + maxPollInterval)
		wantFault(t, f.Fresh(), fault.Unavailable, "policy cache is stale")
		cancel()
		<-done
	})
}
