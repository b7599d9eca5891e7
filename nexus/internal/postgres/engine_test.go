package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// listAll pages through a listing with the given page size.
func listAll(t *testing.T, s *Store, prefix string, recursive bool, pageSize int) ([]string, error) {
	t.Helper()
	var all []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("listing does not end")
		}
		page, more, err := s.ListSecrets(t.Context(), secret.Listing{Prefix: prefix, Recursive: recursive, After: after, Limit: pageSize})
		if err != nil {
			return nil, err
		}
		if len(page) > pageSize {
			t.Fatalf("page of %d entries, want at most %d", len(page), pageSize)
		}
		all = append(all, page...)
		if !more {
			return all, nil
		}
		after = page[len(page)-1]
	}
}

func cas(v int64) *int64 { return &v }

func putCAS(t testing.TB, ctx context.Context, s *Store, path string, c *int64) (secret.Version, error) {
	t.Helper()
	return s.PutSecret(ctx, auditRec(t, s), secret.Put{Path: path, CreatedBy: "me", DEKID: testDEK, CAS: c, Seal: fakeSeal(path)})
}

func storedVersions(t *testing.T, dsn, path string) []int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT version FROM secret_versions WHERE path = $1 ORDER BY version", path)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func span(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func TestCheckAndSet(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()

	steps := []struct {
		name    string
		cas     *int64
		want    int64
		wantErr string
	}{
		{"create-only on a new secret", cas(0), 1, ""},
		{"create-only again", cas(0), 0, "check-and-set failed: p is at version 1, you expected 0"},
		{"stale version", cas(5), 0, "check-and-set failed: p is at version 1, you expected 5"},
		{"current version", cas(1), 2, ""},
		{"no check", nil, 3, ""},
	}
	for _, st := range steps {
		v, err := putCAS(t, ctx, s, "p", st.cas)
		if st.wantErr != "" {
			wantCode(t, err, fault.FailedPrecondition, st.wantErr)
			if !errors.Is(err, secret.ErrCASConflict) {
				t.Errorf("%s: error %v is not secret.ErrCASConflict", st.name, err)
			}
			continue
		}
		if err != nil || v.Version != st.want {
			t.Fatalf("%s: version %d, %v; want %d", st.name, v.Version, err, st.want)
		}
	}
	_, err := putCAS(t, ctx, s, "new", cas(3))
	wantCode(t, err, fault.FailedPrecondition, "check-and-set failed: new has no version yet, you expected 3")
	if _, err := s.Metadata(ctx, "new"); fault.CodeOf(err) != fault.NotFound {
		t.Errorf("a refused create left the secret behind: %v", err)
	}

	required := true
	if _, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", CASRequired: &required}); err != nil {
		t.Fatal(err)
	}
	_, err = putCAS(t, ctx, s, "p", nil)
	wantCode(t, err, fault.FailedPrecondition, "check-and-set is required for p: give the version you expect (it is at version 3)")
	if v, err := putCAS(t, ctx, s, "p", cas(3)); err != nil || v.Version != 4 {
		t.Fatalf("put with cas on a cas-required secret = %d, %v", v.Version, err)
	}
}

func TestConcurrentCASOneWinner(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	put(t, s, "race", 1)
	const n = 32
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		wins, conflicts int
	)
	for range n {
		wg.Go(func() {
			_, err := putCAS(t, t.Context(), s, "race", cas(1))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, secret.ErrCASConflict):
				conflicts++
			default:
				t.Errorf("put: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("%d wins and %d conflicts, want 1 and %d", wins, conflicts, n-1)
	}
}

func TestRetentionPrunesOldVersions(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	ctx := t.Context()
	put(t, s, "p", 13)
	if diff := cmp.Diff(span(4, 13), storedVersions(t, dsn, "p")); diff != "" {
		t.Fatalf("default retention keeps the newest 10 (-want +got):\n%s", diff)
	}
	_, err := s.SecretVersion(ctx, "p", 3)
	wantCode(t, err, fault.NotFound, "version 3 of p no longer exists: the oldest kept is 4")

	five := int32(5)
	m, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &five})
	if err != nil {
		t.Fatal(err)
	}
	if m.OldestVersion != 9 || m.CurrentVersion != 13 || len(m.Versions) != 5 || m.EffectiveMaxVersions != 5 {
		t.Fatalf("after lowering max_versions to 5: oldest %d current %d, %d versions kept, effective %d",
			m.OldestVersion, m.CurrentVersion, len(m.Versions), m.EffectiveMaxVersions)
	}
	if diff := cmp.Diff(span(9, 13), storedVersions(t, dsn, "p")); diff != "" {
		t.Fatalf("lowering max_versions prunes at once (-want +got):\n%s", diff)
	}
	twenty := int32(20)
	if _, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &twenty}); err != nil {
		t.Fatal(err)
	}
	put(t, s, "p", 3)
	if diff := cmp.Diff(span(9, 16), storedVersions(t, dsn, "p")); diff != "" {
		t.Fatalf("raising max_versions keeps what is left and grows (-want +got):\n%s", diff)
	}
	bad := int32(1001)
	_, err = s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &bad})
	wantCode(t, err, fault.Invalid, "max_versions: must be 0 (the default) to 1000, got 1001")
}

func TestRetentionUnderConcurrentPuts(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := putCAS(t, t.Context(), s, "busy", nil); err != nil {
				t.Errorf("put: %v", err)
			}
		})
	}
	wg.Wait()
	if diff := cmp.Diff(span(n-9, n), storedVersions(t, dsn, "busy")); diff != "" {
		t.Fatalf("stored versions (-want +got):\n%s", diff)
	}
	m, err := s.Metadata(t.Context(), "busy")
	if err != nil || m.CurrentVersion != n || m.OldestVersion != n-9 {
		t.Fatalf("metadata = current %d oldest %d, %v", m.CurrentVersion, m.OldestVersion, err)
	}
}

func TestDestroyAndUndelete(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	ctx := t.Context()
	put(t, s, "p", 3)

	if got, err := s.ChangeVersions(ctx, auditRec(t, s), "p", []int64{1, 2}, secret.Destroy); err != nil || !cmp.Equal(got, []int64{1, 2}) {
		t.Fatalf("destroy = %v, %v", got, err)
	}
	_, err := s.SecretVersion(ctx, "p", 2)
	wantCode(t, err, fault.NotFound, "version 2 of p was destroyed")
	var sealedLeft int
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM secret_versions WHERE path = 'p' AND sealed IS NOT NULL").Scan(&sealedLeft); err != nil {
		t.Fatal(err)
	}
	if sealedLeft != 1 {
		t.Fatalf("%d versions still hold sealed data, want 1", sealedLeft)
	}

	_, err = s.ChangeVersions(ctx, auditRec(t, s), "p", []int64{2, 3}, secret.Undelete)
	wantCode(t, err, fault.FailedPrecondition, "version 2 of p was destroyed: it cannot be restored")

	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "p", nil, secret.Delete); err != nil {
		t.Fatal(err)
	}
	_, err = s.SecretVersion(ctx, "p", 0)
	wantCode(t, err, fault.NotFound, "version 3 of p was deleted")
	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "p", nil, secret.Undelete); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SecretVersion(ctx, "p", 0); err != nil || got.Version.Version != 3 {
		t.Fatalf("after undelete: %v, %v", got, err)
	}

	m, err := s.Metadata(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, v := range m.Versions {
		states = append(states, fmt.Sprintf("%d:%v:%v", v.Version, v.DeletedAt != nil, v.DestroyedAt != nil))
	}
	if diff := cmp.Diff([]string{"1:false:true", "2:false:true", "3:false:false"}, states); diff != "" {
		t.Errorf("version states (-want +got):\n%s", diff)
	}
}

func TestMetadataLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()

	_, err := s.Metadata(ctx, "m")
	wantCode(t, err, fault.NotFound, "secret m not found")

	// Metadata first: the secret exists with settings and no version.
	required := true
	m, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "m", CASRequired: &required, SetCustomMetadata: true, CustomMetadata: []byte("sealed-custom")})
	if err != nil {
		t.Fatal(err)
	}
	if m.CurrentVersion != 0 || !m.CASRequired || string(m.CustomMetadata) != "sealed-custom" || m.EffectiveMaxVersions != DefaultMaxVersions {
		t.Fatalf("metadata = %+v", m)
	}
	_, err = s.SecretVersion(ctx, "m", 0)
	wantCode(t, err, fault.NotFound, "secret m has no versions")
	if got, err := listAll(t, s, "", true, 10); err != nil || len(got) != 0 {
		t.Fatalf("a secret without versions is listed: %v, %v", got, err)
	}
	if v, err := putCAS(t, ctx, s, "m", cas(0)); err != nil || v.Version != 1 {
		t.Fatalf("first put with cas 0 = %d, %v", v.Version, err)
	}

	// Unset fields stay; SetCustomMetadata with nil clears.
	m, err = s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "m", SetCustomMetadata: true})
	if err != nil || m.CustomMetadata != nil || !m.CASRequired || len(m.Versions) != 1 {
		t.Fatalf("after clearing custom metadata: %+v, %v", m, err)
	}

	if err := s.DeleteMetadata(ctx, auditRec(t, s), "m"); err != nil {
		t.Fatal(err)
	}
	_, err = s.SecretVersion(ctx, "m", 1)
	wantCode(t, err, fault.NotFound, "secret m not found")
	wantCode(t, s.DeleteMetadata(ctx, auditRec(t, s), "m"), fault.NotFound, "secret m not found")
	// A new secret at the path starts from version 1 again.
	if v, err := putCAS(t, ctx, s, "m", cas(0)); err != nil || v.Version != 1 {
		t.Fatalf("put after delete metadata = %d, %v", v.Version, err)
	}
}

func TestListDirectoryView(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	for _, p := range []string{"apps/demo/db", "apps/demo/cache", "apps/web/api", "apps/web", "apps/top", "apps/x/y/z", "apps2/a", "other", "apps/gone/x"} {
		put(t, s, p, 1)
	}
	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "apps/gone/x", nil, secret.Destroy); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"apps/", false, []string{"apps/demo/", "apps/top", "apps/web", "apps/web/", "apps/x/"}},
		{"", false, []string{"apps/", "apps2/", "other"}},
		{"apps/x/", false, []string{"apps/x/y/"}},
		{"apps/demo/", false, []string{"apps/demo/cache", "apps/demo/db"}},
		{"nothing/", false, nil},
		{"apps/", true, []string{"apps/demo/cache", "apps/demo/db", "apps/top", "apps/web", "apps/web/api", "apps/x/y/z"}},
	}
	for _, tt := range tests {
		for _, pageSize := range []int{1, 2, 1000} {
			got, err := listAll(t, s, tt.prefix, tt.recursive, pageSize)
			if err != nil {
				t.Fatalf("list %q: %v", tt.prefix, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("list %q recursive=%v page %d (-want +got):\n%s", tt.prefix, tt.recursive, pageSize, diff)
			}
		}
	}
}
