package server_test

import (
	"testing"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// A stored keyring rolled back in the database after a rekey, to bring the
// old password back, is refused, by Nexus and by a Keeper that Nexus told
// of the rekey: the old password does not log in again.
func TestRekeyedKeyringRolledBackIsRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	db := s.db()
	var before []byte
	if err := db.QueryRow(ctx, "SELECT sealed FROM root_keyrings").Scan(&before); err != nil {
		t.Fatal(err)
	}
	const newPassword = "purple elephant umbrella quarry"
	resp, err := s.operator(adminID).Rekey(ctx, connect.NewRequest(&nexusv1.RekeyRequest{Password: []byte(password), NewPassword: []byte(newPassword)}))
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	s.token = resp.Msg.GetToken().GetToken()

	// An attacker with the database and the old password puts the old
	// keyring back.
	if _, err := db.Exec(ctx, "UPDATE root_keyrings SET sealed = $1, epoch = 1", before); err != nil {
		t.Fatal(err)
	}
	_, err = s.operator(adminID).Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeDataLoss, "rolled back")
}
