package engine

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testDEK is the data key the tests seal heads with.
var testDEK = envelope.DEKID(bytes.Repeat([]byte{1}, 16))

// fixedKeys is a key manager with one data key (stored, so that version
// rows may name it).
type fixedKeys struct{ key envelope.Key }

func newFixedKeys(t testing.TB) fixedKeys {
	t.Helper()
	k, err := envelope.NewKey(testDEK, bytes.Repeat([]byte{7}, envelope.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return fixedKeys{key: k}
}

func (k fixedKeys) ActiveKey(context.Context) (envelope.Key, error) { return k.key, nil }

func (k fixedKeys) Fetch(context.Context, []byte) error { return nil }

func (k fixedKeys) OpenCached(sealed, aad []byte, what string) ([]byte, bool, error) {
	plain, err := k.Open(context.Background(), sealed, aad, what)
	return plain, true, err
}

func (k fixedKeys) Open(_ context.Context, sealed, aad []byte, what string) ([]byte, error) {
	plain, err := k.key.Open(sealed, aad)
	if err != nil {
		return nil, fault.Wrap(fault.DataLoss, err, "%s failed authentication: the stored data was altered or is corrupt", what)
	}
	return plain, nil
}

// testStore is the engine over a fresh migrated database, with the method names
// of the store tests this suite grew from.
type testStore struct {
	*Engine
	st *postgres.Store
}

// newSecretStore returns an engine on a fresh database, and its DSN.
func newSecretStore(t *testing.T) (*testStore, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	st, err := postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: 16})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if err := st.CreateDataKey(t.Context(), envelope.WrappedKey{ID: testDEK[:], RootKeyVersion: 1, Wrapped: []byte("w")}); err != nil {
		t.Fatalf("CreateDataKey: %v", err)
	}
	return &testStore{Engine: New(st, newFixedKeys(t), postgres.DefaultMaxVersions), st: st}, dsn
}

func auditRec(t testing.TB, s *testStore) *audit.Entry {
	t.Helper()
	return audittest.Record(t, s.st)
}

// value is what the tests store at path.
func value(path string) map[string]string { return map[string]string{"path": path} }

// put stores n versions of path.
func put(t *testing.T, s *testStore, path string, n int) {
	t.Helper()
	for range n {
		if _, err := s.Put(t.Context(), auditRec(t, s), path, "me", value(path), nil); err != nil {
			t.Fatalf("Put(%s): %v", path, err)
		}
	}
}

func putCAS(t testing.TB, ctx context.Context, s *testStore, path string, c *int64) (secret.Version, error) {
	t.Helper()
	return s.Put(ctx, auditRec(t, s), path, "me", value(path), c)
}

// SecretVersion reads a version and checks that it holds the value put.
func (s *testStore) SecretVersion(ctx context.Context, path string, version int64) (secret.Read, error) {
	r, data, err := s.Read(ctx, path, version)
	if err == nil && data["path"] != path {
		return r, errors.New("version holds " + data["path"] + ", want " + path)
	}
	return r, err
}

func (s *testStore) ChangeVersions(ctx context.Context, rec *audit.Entry, path string, versions []int64, change secret.VersionChange) ([]int64, error) {
	return s.Change(ctx, rec, path, versions, change)
}

func (s *testStore) DeleteMetadata(ctx context.Context, rec *audit.Entry, path string) error {
	return s.st.DeleteMetadata(ctx, rec, path)
}

func (s *testStore) ListSecrets(ctx context.Context, l secret.Listing) ([]string, bool, error) {
	return s.st.ListSecrets(ctx, l)
}

// wantCode fails the test unless err is a fault.Error with code and message.
func wantCode(t *testing.T, err error, code fault.Code, msg string) {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want fault code %d %q", err, err, code, msg)
	}
	if fe.Code != code || fe.Msg != msg {
		t.Errorf("error = code %d %q, want code %d %q", fe.Code, fe.Msg, code, msg)
	}
}
