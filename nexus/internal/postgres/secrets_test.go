package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// testDEK is the data key id the tests seal with.
var testDEK = bytes.Repeat([]byte{1}, 16)

// fakeSeal stands in for the envelope: it binds the "ciphertext" to path and
// version so tests can see which version a row holds.
func fakeSeal(path string) func(int64) ([]byte, error) {
	return func(version int64) ([]byte, error) {
		return []byte(fmt.Sprint(path, version)), nil
	}
}

// newSecretStore returns a migrated store holding the test data key.
func newSecretStore(t *testing.T) (*Store, string) {
	t.Helper()
	s, dsn := newStore(t)
	if err := s.CreateDataKey(t.Context(), envelope.WrappedKey{ID: testDEK, RootKeyVersion: 1, Wrapped: []byte("w")}); err != nil {
		t.Fatalf("CreateDataKey: %v", err)
	}
	return s, dsn
}

// put stores n versions of path.
func put(t *testing.T, s *Store, path string, n int) {
	t.Helper()
	for range n {
		if _, err := s.PutSecret(t.Context(), auditRec(t, s), secret.Put{Path: path, CreatedBy: "spiffe://spike.local/test", DEKID: testDEK, Seal: fakeSeal(path)}); err != nil {
			t.Fatalf("PutSecret(%s): %v", path, err)
		}
	}
}

func TestPutSecret(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	for want := int64(1); want <= 3; want++ {
		v, err := s.PutSecret(ctx, auditRec(t, s), secret.Put{Path: "apps/db", CreatedBy: "spiffe://spike.local/w", DEKID: testDEK, Seal: fakeSeal("apps/db")})
		if err != nil {
			t.Fatalf("PutSecret: %v", err)
		}
		if v.Version != want || string(v.Sealed) != fmt.Sprint("apps/db", want) || v.CreatedAt.IsZero() {
			t.Errorf("PutSecret = %+v, want version %d", v, want)
		}
	}
	got, err := s.SecretVersion(ctx, "apps/db", 0)
	if err != nil {
		t.Fatalf("SecretVersion: %v", err)
	}
	want := secret.Read{
		Version: secret.Version{
			Path: "apps/db", Version: 3, DEKID: testDEK, Sealed: []byte("apps/db3"),
			CreatedBy: "spiffe://spike.local/w", CreatedAt: got.CreatedAt,
		},
		Current: 3,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SecretVersion mismatch (-want +got):\n%s", diff)
	}
}

func TestPutSecretSealFails(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	put(t, s, "p", 1)
	sealErr := errors.New("seal broke")
	_, err := s.PutSecret(ctx, auditRec(t, s), secret.Put{Path: "p", CreatedBy: "me", DEKID: testDEK, Seal: func(int64) ([]byte, error) { return nil, sealErr }})
	if !errors.Is(err, sealErr) {
		t.Fatalf("PutSecret with failing seal: error = %v, want %v", err, sealErr)
	}
	// The failed put left nothing behind and did not use up a version.
	v, err := s.PutSecret(ctx, auditRec(t, s), secret.Put{Path: "p", CreatedBy: "me", DEKID: testDEK, Seal: fakeSeal("p")})
	if err != nil || v.Version != 2 {
		t.Errorf("PutSecret after failed put = version %d, %v; want 2, nil", v.Version, err)
	}
}

func TestPutSecretUnknownDataKey(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	_, err := s.PutSecret(t.Context(), auditRec(t, s), secret.Put{Path: "p", CreatedBy: "me", DEKID: bytes.Repeat([]byte{2}, 16), Seal: fakeSeal("p")})
	if err == nil {
		t.Fatal("PutSecret with an unknown data key succeeded")
	}
	_, err = s.SecretVersion(t.Context(), "p", 0)
	wantCode(t, err, fault.NotFound, "secret p not found")
}

func TestPutSecretConcurrent(t *testing.T) {
	t.Parallel()
	s, dsn := newSecretStore(t)
	const n = 32
	const path = "shared/counter"
	// Keep every version, so the test sees that none was lost.
	keepAll := int32(n)
	if _, err := s.UpdateMetadata(t.Context(), auditRec(t, s), secret.MetadataUpdate{Path: path, MaxVersions: &keepAll}); err != nil {
		t.Fatal(err)
	}
	got := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := s.PutSecret(t.Context(), auditRec(t, s), secret.Put{Path: path, CreatedBy: "me", DEKID: testDEK, Seal: fakeSeal(path)})
			if err != nil {
				t.Errorf("PutSecret: %v", err)
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
		if err != nil || string(got.Sealed) != fmt.Sprint(path, v) {
			t.Errorf("version %d holds %q, %v; want %q", v, got.Sealed, err, fmt.Sprint(path, v))
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
			if got.Path != tt.path || got.Version.Version != tt.want || string(got.Sealed) != fmt.Sprint(tt.path, tt.want) ||
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
