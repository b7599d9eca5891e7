package postgres

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestMigrations(t *testing.T) {
	t.Parallel()
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if len(ms) == 0 || ms[0].name != "0001_init.sql" {
		t.Fatalf("migrations start with %v, want 0001_init.sql", ms)
	}
}

// countMigrations returns the number of rows in schema_migrations.
func countMigrations(t *testing.T, dsn string) int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(t.Context())
	var n int64
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatalf("count schema_migrations: %v", err)
	}
	return n
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len(ms))
	dsn := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), dsn, Options{MaxConns: 4})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	if v, err := s.SchemaVersion(t.Context()); err != nil || v != 0 {
		t.Errorf("SchemaVersion before Migrate = %d, %v; want 0, nil", v, err)
	}
	for i := range 2 {
		v, err := s.Migrate(t.Context())
		if err != nil || v != want {
			t.Fatalf("Migrate #%d = %d, %v; want %d, nil", i+1, v, err, want)
		}
	}
	if v, err := s.SchemaVersion(t.Context()); err != nil || v != want {
		t.Errorf("SchemaVersion = %d, %v; want %d, nil", v, err, want)
	}
	if n := countMigrations(t, dsn); n != want {
		t.Errorf("schema_migrations has %d rows, want %d", n, want)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len(ms))
	dsn := pgtest.NewDatabase(t)

	// Four Nexus replicas starting at once, each with its own pool.
	var wg sync.WaitGroup
	versions := make([]int64, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), dsn, Options{MaxConns: 2})
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			versions[i], errs[i] = s.Migrate(t.Context())
		})
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil || versions[i] != want {
			t.Errorf("Migrate in replica %d = %d, %v; want %d, nil", i, versions[i], errs[i], want)
		}
	}
	if n := countMigrations(t, dsn); n != want {
		t.Errorf("schema_migrations has %d rows, want %d", n, want)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	s, dsn := newStore(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version) VALUES (9999)"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Migrate(t.Context())
	if fault.CodeOf(err) != fault.FailedPrecondition {
		t.Errorf("Migrate on a newer schema: error = %v, want fault.FailedPrecondition", err)
	}
}

// A Nexus serves a newer schema only when every newer migration declares
// that a Nexus of its schema may (a rolling upgrade); it never migrates
// one.
func TestServesACompatibleNewerSchema(t *testing.T) {
	t.Parallel()
	s, dsn := newStore(t)
	_, latest, err := s.SchemaVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Fatalf("CheckSchema on the schema this Nexus embeds: %v", err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	// The next release's expand-only migration.
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version, serves_from) VALUES ($1, $2)", latest+1, latest); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Errorf("CheckSchema on a newer schema that this Nexus may serve: %v", err)
	}
	if _, err := s.Migrate(t.Context()); fault.CodeOf(err) != fault.FailedPrecondition {
		t.Errorf("Migrate on a newer schema: error = %v, want fault.FailedPrecondition", err)
	}
	// One after it that only its own Nexus may serve.
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version, serves_from) VALUES ($1, $1)", latest+2); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("database schema version is %d, newer than this Nexus (%d) can serve", latest+2, latest)
	if err := s.CheckSchema(t.Context()); err == nil || err.Error() != want {
		t.Errorf("CheckSchema = %v, want %q", err, want)
	}
}

func TestParseServesFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql     string
		want    int64
		wantErr bool
	}{
		{"CREATE TABLE x ();", 7, false},
		{"-- Adds a column.\n-- serves-from: 6\nALTER TABLE x ADD COLUMN y int;", 6, false},
		{"  -- serves-from:   5  \n", 5, false},
		{"-- serves-from: 8\n", 0, true},
		{"-- serves-from: 0\n", 0, true},
		{"-- serves-from: six\n", 0, true},
	}
	for _, tt := range tests {
		m := migration{version: 7, name: "0007_x.sql", sql: tt.sql}
		err := parseServesFrom(&m)
		if (err != nil) != tt.wantErr || (!tt.wantErr && m.servesFrom != tt.want) {
			t.Errorf("parseServesFrom(%q) = %d, %v; want %d (error %v)", tt.sql, m.servesFrom, err, tt.want, tt.wantErr)
		}
	}
}
