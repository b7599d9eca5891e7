package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// listAll pages through a listing with the given page size.
func listAll(t *testing.T, s *testStore, prefix string, recursive bool, pageSize int) ([]string, error) {
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
	if _, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", CASRequired: &required}, nil); err != nil {
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

// Writers of one secret queue on its row: each that waited reads the
// versions again once it holds the lock, so that every put gets a version
// of its own, retention prunes exactly the oldest, and the head agrees
// with the rows afterwards.
func TestConcurrentPutsQueue(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	put(t, s, "queue", 1)
	const n = 32
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got []int64
	)
	for range n {
		wg.Go(func() {
			v, err := putCAS(t, t.Context(), s, "queue", nil)
			if err != nil {
				t.Errorf("put: %v", err)
				return
			}
			mu.Lock()
			got = append(got, v.Version)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(got)
	if diff := cmp.Diff(span(2, n+1), got); diff != "" {
		t.Fatalf("versions given to the puts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(span(n-8, n+1), storedVersions(t, dsn, "queue")); diff != "" {
		t.Fatalf("versions kept (-want +got):\n%s", diff)
	}
	for v := int64(n - 8); v <= n+1; v++ {
		if _, err := s.SecretVersion(t.Context(), "queue", v); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	if v, err := putCAS(t, t.Context(), s, "queue", nil); err != nil || v.Version != n+2 {
		t.Fatalf("the put after them = %d, %v; want version %d", v.Version, err, n+2)
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
	m, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &five}, nil)
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
	if _, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &twenty}, nil); err != nil {
		t.Fatal(err)
	}
	put(t, s, "p", 3)
	if diff := cmp.Diff(span(9, 16), storedVersions(t, dsn, "p")); diff != "" {
		t.Fatalf("raising max_versions keeps what is left and grows (-want +got):\n%s", diff)
	}
	bad := int32(1001)
	_, err = s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "p", MaxVersions: &bad}, nil)
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
	m, err := s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "m", CASRequired: &required, SetCustomMetadata: true}, map[string]string{"owner": "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	if m.CurrentVersion != 0 || !m.CASRequired || m.Custom["owner"] != "team-a" || m.EffectiveMaxVersions != postgres.DefaultMaxVersions {
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
	m, err = s.UpdateMetadata(ctx, auditRec(t, s), secret.MetadataUpdate{Path: "m", SetCustomMetadata: true}, nil)
	if err != nil || m.Custom != nil || !m.CASRequired || len(m.Versions) != 1 {
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

func TestPutSecretConcurrent(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	const n = 32
	const path = "shared/counter"
	// Keep every version, so the test sees that none was lost.
	keepAll := int32(n)
	if _, err := s.UpdateMetadata(t.Context(), auditRec(t, s), secret.MetadataUpdate{Path: path, MaxVersions: &keepAll}, nil); err != nil {
		t.Fatal(err)
	}
	got := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := putCAS(t, t.Context(), s, path, nil)
			if err != nil {
				t.Errorf("Put: %v", err)
				return
			}
			got[i] = v.Version
		})
	}
	wg.Wait()
	slices.Sort(got)
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("versions returned by concurrent puts (-want +got):\n%s", diff)
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var current int64
	if err := conn.QueryRow(t.Context(), "SELECT current_version FROM secrets WHERE path = $1", path).Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != n {
		t.Errorf("current_version = %d, want %d", current, n)
	}
	rows, err := conn.Query(t.Context(), "SELECT version FROM secret_versions WHERE path = $1 ORDER BY version", path)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored versions (-want +got):\n%s", diff)
	}
	for _, v := range want {
		got, err := s.SecretVersion(t.Context(), path, v)
		if err != nil || got.Version.Version != v {
			t.Errorf("version %d: %+v, %v", v, got, err)
		}
	}
}

func TestSecretVersion(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	put(t, s, "a/b", 3)
	put(t, s, "gone", 2)
	for _, del := range []struct {
		path     string
		versions []int64
	}{{"a/b", []int64{2}}, {"gone", nil}} {
		if _, err := s.ChangeVersions(ctx, auditRec(t, s), del.path, del.versions, secret.Delete); err != nil {
			t.Fatalf("ChangeVersions(%s, %v): %v", del.path, del.versions, err)
		}
	}

	tests := []struct {
		name       string
		path       string
		version    int64
		want       int64 // version returned, when no error
		wantCode   fault.Code
		wantErrMsg string
	}{
		{name: "latest", path: "a/b", version: 0, want: 3},
		{name: "specific", path: "a/b", version: 1, want: 1},
		{name: "newest by number", path: "a/b", version: 3, want: 3},
		{name: "deleted", path: "a/b", version: 2, wantCode: fault.NotFound, wantErrMsg: "version 2 of a/b was deleted"},
		{name: "future version", path: "a/b", version: 4, wantCode: fault.NotFound, wantErrMsg: "version 4 of a/b does not exist: the newest is 3"},
		{name: "missing secret", path: "nope", version: 0, wantCode: fault.NotFound, wantErrMsg: "secret nope not found"},
		{name: "missing secret version", path: "nope", version: 1, wantCode: fault.NotFound, wantErrMsg: "secret nope not found"},
		{name: "prefix is not a secret", path: "a", version: 0, wantCode: fault.NotFound, wantErrMsg: "secret a not found"},
		{name: "latest deleted", path: "gone", version: 0, wantCode: fault.NotFound, wantErrMsg: "version 2 of gone was deleted"},
		{name: "older of deleted latest", path: "gone", version: 1, want: 1},
		{name: "negative", path: "a/b", version: -1, wantCode: fault.Invalid, wantErrMsg: "version: must not be negative, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.SecretVersion(ctx, tt.path, tt.version)
			if tt.wantCode != 0 {
				wantCode(t, err, tt.wantCode, tt.wantErrMsg)
				return
			}
			if err != nil {
				t.Fatalf("SecretVersion: %v", err)
			}
			if got.Path != tt.path || got.Version.Version != tt.want ||
				got.DeletedAt != nil {
				t.Errorf("SecretVersion = %+v, want version %d of %s", got, tt.want, tt.path)
			}
		})
	}
}

func TestListSecrets(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	// Paths with '%' and '_' are invalid at the API, but the store must still
	// match them literally.
	for _, p := range []string{"ap", "apps/a", "apps/b/c", "apps_x", "appsZ", "b", "bz", "a%x", "abc", "a_c", "del/x"} {
		put(t, s, p, 2)
	}
	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "del/x", []int64{1, 2}, secret.Delete); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "bz", []int64{2}, secret.Delete); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a%x", "a_c", "abc", "ap", "apps/a", "apps/b/c", "appsZ", "apps_x", "b", "bz"}},
		{"ap", []string{"ap", "apps/a", "apps/b/c", "appsZ", "apps_x"}},
		{"apps/", []string{"apps/a", "apps/b/c"}},
		{"apps/b/c", []string{"apps/b/c"}},
		{"b", []string{"b", "bz"}},
		{"a_", []string{"a_c"}},
		{"a%", []string{"a%x"}},
		{"%", nil},
		{"_", nil},
		{"del/", nil},
		{"zzz", nil},
		{"\x7f", nil},
		{"caf\u00e9", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			t.Parallel()
			got, err := listAll(t, s, tt.prefix, true, 3)
			if err != nil {
				t.Fatalf("ListSecrets(%q): %v", tt.prefix, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListSecrets(%q) mismatch (-want +got):\n%s", tt.prefix, diff)
			}
		})
	}
}

func TestDeleteVersions(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	put(t, s, "p", 4)

	steps := []struct {
		name       string
		path       string
		versions   []int64
		want       []int64
		wantCode   fault.Code
		wantErrMsg string
	}{
		{name: "current by default", path: "p", want: []int64{4}},
		{name: "several, unsorted, duplicated", path: "p", versions: []int64{3, 1, 3}, want: []int64{1, 3}},
		{name: "already deleted is fine", path: "p", versions: []int64{1}, want: []int64{1}},
		{name: "missing version", path: "p", versions: []int64{2, 9}, wantCode: fault.Invalid, wantErrMsg: "versions: version 9 of p does not exist (kept: 1 to 4)"},
		{name: "version zero", path: "p", versions: []int64{0}, wantCode: fault.Invalid, wantErrMsg: "versions: version 0 of p does not exist (kept: 1 to 4)"},
		{name: "missing secret", path: "q", wantCode: fault.NotFound, wantErrMsg: "secret q not found"},
		{name: "current already deleted", path: "p", want: []int64{4}},
	}
	for _, st := range steps {
		got, err := s.ChangeVersions(ctx, auditRec(t, s), st.path, st.versions, secret.Delete)
		if st.wantCode != 0 {
			wantCode(t, err, st.wantCode, st.wantErrMsg)
			continue
		}
		if err != nil {
			t.Fatalf("%s: ChangeVersions: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: deleted versions mismatch (-want +got):\n%s", st.name, diff)
		}
	}

	// Only version 2 survives: the failed call that named it deleted nothing.
	for v, wantErr := range map[int64]string{
		1: "version 1 of p was deleted",
		2: "",
		3: "version 3 of p was deleted",
		4: "version 4 of p was deleted",
	} {
		_, err := s.SecretVersion(ctx, "p", v)
		if wantErr == "" {
			if err != nil {
				t.Errorf("SecretVersion(p, %d): %v", v, err)
			}
			continue
		}
		wantCode(t, err, fault.NotFound, wantErr)
	}
	if got, err := listAll(t, s, "p", true, 100); err != nil || !slices.Equal(got, []string{"p"}) {
		t.Errorf("ListSecrets(p) = %v, %v; want [p]", got, err)
	}
	if _, err := s.ChangeVersions(ctx, auditRec(t, s), "p", []int64{2}, secret.Delete); err != nil {
		t.Fatal(err)
	}
	if got, err := listAll(t, s, "p", true, 100); err != nil || len(got) != 0 {
		t.Errorf("ListSecrets(p) after deleting every version = %v, %v; want none", got, err)
	}
	// A new version makes the secret visible again.
	put(t, s, "p", 1)
	if got, err := s.SecretVersion(ctx, "p", 0); err != nil || got.Version.Version != 5 {
		t.Errorf("SecretVersion(p, 0) after a new put = %d, %v; want 5, nil", got.Version.Version, err)
	}
}
