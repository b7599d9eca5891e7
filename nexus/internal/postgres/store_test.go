package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newStore returns a migrated store on a fresh database, and its DSN for
// tests that look at the database directly.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), dsn, Options{MaxConns: 16})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s, dsn
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

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=x sslmode=disable", port)
	_, err = Open(t.Context(), dsn, Options{MaxConns: 4})
	wantCode(t, err, fault.Unavailable, "database unavailable")
}

func TestOpenBadArguments(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.Context(), "host=127.0.0.1", Options{MaxConns: 0}); err == nil {
		t.Error("Open with 0 connections succeeded")
	}
	if _, err := Open(t.Context(), "postgres://%zz", Options{MaxConns: 4}); err == nil {
		t.Error("Open with a malformed DSN succeeded")
	}
}

func TestDatabaseGoesAway(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(filepath.Join(t.TempDir(), "cluster"))
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	s, err := Open(t.Context(), c.DSN("postgres"), Options{MaxConns: 4})
	if err != nil {
		_ = c.Stop()
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := s.Migrate(t.Context()); err != nil {
		t.Errorf("Migrate: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop cluster: %v", err)
	}
	_, _, _, err = s.ReadSecret(t.Context(), "a", 0)
	wantCode(t, err, fault.Unavailable, "database unavailable")
	wantCode(t, s.Ping(t.Context()), fault.Unavailable, "database unavailable")
}

func TestContextErrorsPassThrough(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, _, err := s.ReadSecret(ctx, "a", 0)
	if !errors.Is(err, context.Canceled) || fault.CodeOf(err) != 0 {
		t.Errorf("SecretVersion with canceled context: error = %v (code %d), want context.Canceled", err, fault.CodeOf(err))
	}
	err = rawPut(ctx, s, auditRec(t, s), "a", nil)
	if !errors.Is(err, context.Canceled) || fault.CodeOf(err) != 0 {
		t.Errorf("PutSecret with canceled context: error = %v (code %d), want context.Canceled", err, fault.CodeOf(err))
	}
}

// auditRec is the audit record a test's change commits with.
func auditRec(t testing.TB, s *Store) *audit.Entry {
	t.Helper()
	return audittest.Record(t, s)
}
