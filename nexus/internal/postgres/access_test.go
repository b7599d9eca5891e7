package postgres

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
)

// manifestCall is what a policy.ManifestFunc was given.
type manifestCall struct {
	Old  string
	Rows []string
	Gen  int64
}

func rowNames(rows []policy.Record) []string {
	var names []string
	for _, r := range rows {
		names = append(names, r.Name+"="+string(r.Sealed))
	}
	return names
}

func TestPolicyChangesRewriteTheManifest(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	var calls []manifestCall
	record := func(next string) policy.ManifestFunc {
		return func(old []byte, rows []policy.Record, gen int64) ([]byte, error) {
			calls = append(calls, manifestCall{Old: string(old), Rows: rowNames(rows), Gen: gen})
			return []byte(next), nil
		}
	}
	snap, err := s.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Manifest != nil || snap.Generation != 0 || len(snap.Rows) != 0 {
		t.Fatalf("empty database: %+v", snap)
	}
	if _, err := s.PutPolicy(ctx, auditRec(t, s), "b", []byte("b1"), record("m1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPolicy(ctx, auditRec(t, s), "a", []byte("a1"), record("m2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutPolicy(ctx, auditRec(t, s), "b", []byte("b2"), record("m3")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(ctx, auditRec(t, s), "a", record("m4")); err != nil {
		t.Fatal(err)
	}
	want := []manifestCall{
		{Old: "", Rows: []string{"b=b1"}, Gen: 1},
		{Old: "m1", Rows: []string{"a=a1", "b=b1"}, Gen: 2},
		{Old: "m2", Rows: []string{"a=a1", "b=b2"}, Gen: 3},
		{Old: "m3", Rows: []string{"b=b2"}, Gen: 4},
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("manifest calls (-want +got):\n%s", diff)
	}
	snap, err = s.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(snap.Manifest) != "m4" || snap.Generation != 4 || !cmp.Equal(rowNames(snap.Rows), []string{"b=b2"}) {
		t.Errorf("snapshot = manifest %q, generation %d, rows %v", snap.Manifest, snap.Generation, rowNames(snap.Rows))
	}

	// A failing callback rolls the whole change back; deleting a missing
	// policy never calls it.
	calls = nil
	boom := errors.New("boom")
	failing := func([]byte, []policy.Record, int64) ([]byte, error) { return nil, boom }
	if _, err := s.PutPolicy(ctx, auditRec(t, s), "c", []byte("c1"), failing); !errors.Is(err, boom) {
		t.Fatalf("PutPolicy with a failing manifest = %v, want boom", err)
	}
	if err := s.DeletePolicy(ctx, auditRec(t, s), "b", failing); !errors.Is(err, boom) {
		t.Fatalf("DeletePolicy with a failing manifest = %v, want boom", err)
	}
	wantCode(t, s.DeletePolicy(ctx, auditRec(t, s), "nope", record("x")), fault.NotFound, "policy nope not found")
	if len(calls) != 0 {
		t.Errorf("manifest computed for a missing policy: %v", calls)
	}
	after, err := s.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, after); diff != "" {
		t.Errorf("failed changes changed the policies (-before +after):\n%s", diff)
	}
}

// Concurrent changes queue: each builds on the manifest the previous one
// wrote, so none is lost.
func TestPolicyChangesAreSerialised(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	const n = 12
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.PutPolicy(t.Context(), auditRec(t, s), fmt.Sprintf("p%02d", i), []byte("x"),
				func(old []byte, rows []policy.Record, gen int64) ([]byte, error) {
					if len(rows) != int(gen) {
						return nil, fmt.Errorf("generation %d with %d rows", gen, len(rows))
					}
					return fmt.Appendf(old, "%d;", gen), nil
				})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
	}
	snap, err := s.Policies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for gen := 1; gen <= n; gen++ {
		fmt.Fprintf(&want, "%d;", gen)
	}
	if string(snap.Manifest) != want.String() || snap.Generation != n {
		t.Errorf("manifest %q at generation %d, want %q at %d", snap.Manifest, snap.Generation, want.String(), n)
	}
}
