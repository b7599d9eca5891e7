package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

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
	put := func(rec *audit.Entry, cas *int64) error {
		_, err := s.PutSecret(ctx, rec, secret.Put{Path: "p", CreatedBy: "me", DEKID: testDEK, CAS: cas, Seal: fakeSeal("p")})
		return err
	}

	if err := put(nil, nil); !errors.Is(err, errNoRecord) {
		t.Fatalf("put without a record: %v, want it refused", err)
	}
	if _, err := s.SecretVersion(ctx, "p", 0); err == nil {
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
	if _, err := s.ChangeVersions(ctx, rec, "p", nil, secret.Delete); err != nil {
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
	_, err := s.PutSecret(ctx, rec, secret.Put{Path: "q", CreatedBy: "me", DEKID: testDEK, Seal: fakeSeal("q")})
	if err == nil {
		t.Fatal("put committed although its record could not be written")
	}
	if _, err := s.SecretVersion(context.WithoutCancel(ctx), "q", 0); err == nil {
		t.Fatal("the put is visible although its record was not written")
	}
	if rec.Recorded() {
		t.Fatal("record marked written")
	}
}
