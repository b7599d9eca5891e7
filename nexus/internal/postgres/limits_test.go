package postgres

import (
	"errors"
	"strings"
	"testing"

	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// Behind pgbouncer in transaction mode the session limits are the serving
// role's defaults: an owner without the right to set them is told what to
// run, a Nexus whose sessions lack them refuses to open the store, and
// once a superuser has set them (and pgbouncer reconnected) it opens.
func TestSessionLimitsBehindPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewRoles(t, "")
	b := pgtest.StartBouncer(t, db.Serving, pgtest.BouncerOptions{PoolSize: 2, Users: []string{db.ServingRole}})
	opts := Options{MaxConns: 4, Pooler: PgBouncerTransaction}

	owner, err := Open(ctx, db.Owner, Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	var denied *LimitsDeniedError
	err = owner.SetServingLimits(ctx, db.ServingRole)
	if !errors.As(err, &denied) || !strings.Contains(denied.SQL, `ALTER ROLE "`+db.ServingRole+`" IN DATABASE`) ||
		!strings.Contains(denied.SQL, "statement_timeout = '15s'") {
		t.Fatalf("SetServingLimits as an owner without CREATEROLE: %v; want a LimitsDeniedError with the SQL", err)
	}

	_, err = Open(ctx, b.DSN(db.Serving), opts)
	for _, want := range []string{"statement_timeout is off (want 1ms to 15s)", "lock_timeout is off", denied.SQL, "RECONNECT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open through pgbouncer without the limits: %v; want it to say %q", err, want)
		}
	}

	admin, err := Open(ctx, db.Admin, Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.SetServingLimits(ctx, db.ServingRole); err != nil {
		t.Fatalf("SetServingLimits as a superuser: %v", err)
	}
	b.Restart() // new server sessions, which get the new defaults
	s, err := Open(ctx, b.DSN(db.Serving), opts)
	if err != nil {
		t.Fatalf("Open through pgbouncer with the limits: %v\n%s", err, b.LogTail())
	}
	defer s.Close()
	for _, l := range sessionLimits {
		var got string
		if err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", l.name).Scan(&got); err != nil || got != l.value() {
			t.Errorf("%s through pgbouncer = %q, %v; want %q", l.name, got, err, l.value())
		}
	}

	// Connected directly, the startup parameters win over the defaults.
	direct, err := Open(ctx, db.Serving+" statement_timeout=5s", Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	var got string
	if err := direct.pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&got); err != nil || got != "5s" {
		t.Errorf("statement_timeout directly with the DSN's 5s = %q, %v", got, err)
	}
}
