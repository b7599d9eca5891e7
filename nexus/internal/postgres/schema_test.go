package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), dsn, Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckSchema(t.Context()); err == nil || !strings.Contains(err.Error(), "schema version is 0") {
		t.Errorf("CheckSchema before Migrate = %v, want version 0 reported", err)
	}
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err != nil {
		t.Errorf("CheckSchema after Migrate = %v, want nil", err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version) VALUES (9999)"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(t.Context()); err == nil || !strings.Contains(err.Error(), "9999") {
		t.Errorf("CheckSchema on a newer schema = %v, want version 9999 reported", err)
	}
	if st := s.Stat(); st.MaxConns() != 2 {
		t.Errorf("Stat().MaxConns() = %d, want 2", st.MaxConns())
	}
}
