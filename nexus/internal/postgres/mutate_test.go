package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// testDEK is the data key id test rows name.
var testDEK = bytes.Repeat([]byte{1}, 16)

// newSecretStore returns a migrated store holding the test data key.
func newSecretStore(t *testing.T) (*Store, string) {
	t.Helper()
	s, dsn := newStore(t)
	if err := s.CreateDataKey(t.Context(), envelope.WrappedKey{ID: testDEK, RootKeyVersion: 1, Wrapped: []byte("w")}); err != nil {
		t.Fatalf("CreateDataKey: %v", err)
	}
	return s, dsn
}

// rawPut stores a new version of path through WriteSecret, with a head
// that is not sealed (the engine's tests cover sealing).
func rawPut(ctx context.Context, s *Store, rec *audit.Entry, path string, cas *int64) error {
	_, _, err := s.WriteSecret(ctx, rec, path, func(cur *secret.Stored, _ []secret.Row) (secret.Write, []byte, error) {
		h := secret.Head{Incarnation: make([]byte, secret.IncarnationSize)}
		w := secret.Write{Create: cur == nil}
		if cur != nil {
			h.Current, h.Oldest = cur.Current, cur.Oldest
		}
		if err := h.CheckCAS(path, cas); err != nil {
			return w, nil, err
		}
		v := h.Add("me", nil, DefaultMaxVersions)
		h.Plain(&w)
		w.Head = []byte("test head")
		w.Insert = &secret.Row{Version: v, DEKID: testDEK, Sealed: []byte("x"), CreatedBy: "me", CreatedAt: time.Now()}
		return w, []byte("{}"), nil
	})
	return err
}

// auditRows counts the audit records of test requests in the database.
func auditRows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_log WHERE caller = $1`, audittest.Caller).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A change commits together with its request's audit record, or not at
// all: without a record nothing happens; a change that fails leaves no
// record; a request's second change does not write the record again.
func TestMutationsCommitWithTheirRecord(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	put := func(rec *audit.Entry, cas *int64) error { return rawPut(ctx, s, rec, "p", cas) }

	if err := put(nil, nil); !errors.Is(err, errNoRecord) {
		t.Fatalf("put without a record: %v, want it refused", err)
	}
	if _, _, _, err := s.ReadSecret(ctx, "p", 0); err == nil {
		t.Fatal("a put without a record was stored")
	}
	if n := auditRows(t, s); n != 0 {
		t.Fatalf("%d records after a refused put, want 0", n)
	}

	rec := auditRec(t, s)
	if err := put(rec, nil); err != nil {
		t.Fatal(err)
	}
	if !rec.Recorded() || auditRows(t, s) != 1 {
		t.Fatalf("after a put: recorded %v, %d records; want true, 1", rec.Recorded(), auditRows(t, s))
	}
	// The same request changes something else: one record still.
	if err := rawPut(ctx, s, rec, "p", nil); err != nil {
		t.Fatal(err)
	}
	if n := auditRows(t, s); n != 1 {
		t.Fatalf("%d records after a request's second change, want 1", n)
	}

	failed := auditRec(t, s)
	if err := put(failed, new(int64)); !errors.Is(err, secret.ErrCASConflict) {
		t.Fatalf("put with a stale cas: %v, want a conflict", err)
	}
	if failed.Recorded() || auditRows(t, s) != 1 {
		t.Fatalf("after a failed put: recorded %v, %d records; want false, 1", failed.Recorded(), auditRows(t, s))
	}
}

// A record that cannot be written rolls its change back: fail closed.
func TestMutationFailsWithItsRecord(t *testing.T) {
	t.Parallel()
	s, _ := newSecretStore(t)
	ctx := t.Context()
	// A constraint the record violates: its caller may not be the test's.
	if _, err := s.pool.Exec(ctx, `ALTER TABLE audit_log ADD CONSTRAINT no_test CHECK (caller <> '`+audittest.Caller+`')`); err != nil {
		t.Fatal(err)
	}
	rec := auditRec(t, s)
	err := rawPut(ctx, s, rec, "q", nil)
	if err == nil {
		t.Fatal("put committed although its record could not be written")
	}
	if _, _, _, err := s.ReadSecret(context.WithoutCancel(ctx), "q", 0); err == nil {
		t.Fatal("the put is visible although its record was not written")
	}
	if rec.Recorded() {
		t.Fatal("record marked written")
	}
}

// Outcomes kept under idempotency keys go once older than the retention.
func TestPruneOutcomes(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for key, age := range map[string]string{"old-key-0123456789": "25 hours", "new-key-0123456789": "1 hour"} {
		if _, err := s.pool.Exec(ctx, `INSERT INTO idempotency_keys (caller, key, request_hash, outcome, mac, created_at)
			VALUES ('spiffe://spike.local/x', $1, sha256('r'), '{}', 'm', now() - $2::interval)`, key, age); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneOutcomes(ctx, 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PruneOutcomes = %d, %v; want 1", n, err)
	}
	var left []string
	rows, err := s.pool.Query(ctx, `SELECT key FROM idempotency_keys`)
	if err != nil {
		t.Fatal(err)
	}
	if left, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(left) != 1 || left[0] != "new-key-0123456789" {
		t.Fatalf("left %v, %v; want the new key only", left, err)
	}
}
