package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// newRoleStack is a stack whose Nexus connects as a role of its own, so
// that a test can cut that role off the database.
func newRoleStack(t *testing.T) (*stack, string) {
	t.Helper()
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	role := "nexus_" + hex.EncodeToString(suffix[:])
	s := newStackAs(t, role)
	s.init()
	return s, role
}

// cutOff makes the database refuse role's new connections and ends its
// open ones: to Nexus, the database is down.
func (s *stack) cutOff(role string) {
	s.exec(fmt.Sprintf(`ALTER ROLE %s CONNECTION LIMIT 0`, role))
	s.exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
}

// With the database down, requests fail with Unavailable and say that the
// database is the cause (not only that the audit log is unavailable); when
// it is back, they succeed again without anyone acting on Nexus.
func TestDatabaseDownIsNamed(t *testing.T) {
	t.Parallel()
	s, role := newRoleStack(t)
	s.put("apps/x", map[string]string{"k": "v"})
	s.cutOff(role)

	_, err := s.get("apps/x", 0)
	wantCode(t, err, connect.CodeUnavailable, "database unavailable")
	_, err = s.secrets(adminID).PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/x", Data: map[string]string{"k": "w"}}))
	wantCode(t, err, connect.CodeUnavailable, "database unavailable")

	s.exec(fmt.Sprintf(`ALTER ROLE %s CONNECTION LIMIT -1`, role))
	got, err := s.get("apps/x", 0)
	if err != nil || got.GetData()["k"] != "v" || got.GetVersion() != 1 {
		t.Fatalf("after the database is back: %v, %v; want version 1 with k=v", got, err)
	}
}

// A commit whose outcome Nexus cannot know is answered Unknown, also when
// the audit record of that answer cannot be written either: Unavailable
// would tell the client that nothing happened, and its retry could apply
// the write twice.
func TestUncertainCommitStaysUnknown(t *testing.T) {
	t.Parallel()
	s, role := newRoleStack(t)
	for i := range 4 { // pooled connections for the put to use
		s.put(fmt.Sprintf("apps/warm%d", i), map[string]string{"k": "v"})
	}
	// When the put of apps/boom commits, every connection of Nexus's role
	// ends, its own among them, and no new one is accepted.
	s.exec(fmt.Sprintf(`CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
		BEGIN
			PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s';
			RETURN NULL;
		END $$`, role))
	s.exec(`CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON secret_versions DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW WHEN (NEW.path = 'apps/boom') EXECUTE FUNCTION boom()`)
	s.exec(fmt.Sprintf(`ALTER ROLE %s CONNECTION LIMIT 0`, role))

	_, err := s.secrets(adminID).PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: "apps/boom", Data: map[string]string{"k": "v"}}))
	wantCode(t, err, connect.CodeUnknown, "may or may not have been applied")
}
