package server_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// patiently calls f until it returns something else than the backoff's
// "try again in": after a refusal even right credentials wait.
func patiently(t *testing.T, f func() error) error {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := f()
		if connect.CodeOf(err) != connect.CodeResourceExhausted || time.Now().After(deadline) {
			return err
		}
	}
}

// TestSharesAndRekey runs the unlock credentials through Nexus and a real
// Keeper: init with a password and 2 of 3 shares; k-1 shares do not
// unseal, k do; a rekey to a new password needs an admin token and the
// current credentials, and afterwards the old password and the old shares
// are refused by unseal and login while the new password works.
func TestSharesAndRekey(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := t.Context()
	op := s.operator(adminID)
	initResp, err := op.Init(ctx, connect.NewRequest(&nexusv1.InitRequest{Password: []byte(password), ShareThreshold: 2, ShareCount: 3}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	shares := initResp.Msg.GetShares()
	s.token = initResp.Msg.GetToken().GetToken()
	if len(shares) != 3 || s.token == "" || initResp.Msg.GetProblem() != "" {
		t.Fatalf("Init: %d shares, token %t, problem %q; want 3, a token, none", len(shares), s.token != "", initResp.Msg.GetProblem())
	}
	s.put("apps/x", map[string]string{"k": "v"})

	s.restartKeeper()
	unsealShares := func(sh [][]byte) error {
		_, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Shares: sh}))
		return err
	}
	wantCode(t, unsealShares(shares[:1]), connect.CodeInvalidArgument, "not enough shares: have 1 of the 2 needed")
	if err := patiently(t, func() error { return unsealShares(shares[1:]) }); err != nil {
		t.Fatalf("Unseal with 2 of 3 shares: %v", err)
	}
	if got, err := s.get("apps/x", 0); err != nil || got.GetData()["k"] != "v" {
		t.Fatalf("get after unseal with shares = %v, %v", got, err)
	}

	const newPassword = "purple elephant umbrella quarry"
	rekey := func(token string, m *nexusv1.RekeyRequest) (*nexusv1.RekeyResponse, error) {
		resp, err := s.operatorWith(adminID, token).Rekey(ctx, connect.NewRequest(m))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	_, err = rekey("", &nexusv1.RekeyRequest{Password: []byte(password), NewPassword: []byte(newPassword)})
	wantCode(t, err, connect.CodeUnauthenticated, "")
	_, err = rekey(s.token, &nexusv1.RekeyRequest{Password: []byte(password)})
	wantCode(t, err, connect.CodeInvalidArgument, "new_password or shares are required")
	_, err = rekey(s.token, &nexusv1.RekeyRequest{Password: []byte(password), NewPassword: []byte("password1234")})
	wantCode(t, err, connect.CodeInvalidArgument, "too easy to guess")
	err = patiently(t, func() error {
		_, err := rekey(s.token, &nexusv1.RekeyRequest{Password: []byte("not the password"), NewPassword: []byte(newPassword)})
		return err
	})
	wantCode(t, err, connect.CodeInvalidArgument, "wrong password")
	var r *nexusv1.RekeyResponse
	if err := patiently(t, func() (err error) {
		r, err = rekey(s.token, &nexusv1.RekeyRequest{Shares: shares[:2], NewPassword: []byte(newPassword)})
		return err
	}); err != nil {
		t.Fatalf("Rekey with shares: %v", err)
	}
	if r.GetEpoch() != 2 || len(r.GetShares()) != 0 || r.GetKeyringId() != initResp.Msg.GetKeyringId() {
		t.Fatalf("Rekey = %v, want keyring %s at epoch 2, no shares", r, initResp.Msg.GetKeyringId())
	}
	// Every admin token went with the old credentials; the caller got a
	// new one.
	if _, err := s.get("apps/x", 0); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("the admin token from before the rekey: %v, want Unauthenticated", err)
	}
	if s.token = r.GetToken().GetToken(); s.token == "" {
		t.Fatal("rekey returned no new admin token")
	}
	if _, err := s.get("apps/x", 0); err != nil {
		t.Fatalf("the new admin token: %v", err)
	}
	var kdfParams, ciphertext, sealed []byte
	var epoch int64
	if err := s.db().QueryRow(ctx, "SELECT kdf_params, ciphertext, sealed, epoch FROM root_keyrings").Scan(&kdfParams, &ciphertext, &sealed, &epoch); err != nil {
		t.Fatal(err)
	}
	if len(kdfParams) != 0 || len(ciphertext) != 0 || len(sealed) == 0 || epoch != 2 {
		t.Errorf("stored keyring: kdf_params %d bytes, ciphertext %d, sealed %d, epoch %d; want 0, 0, some, 2", len(kdfParams), len(ciphertext), len(sealed), epoch)
	}

	login := func(m *nexusv1.LoginRequest) error {
		return patiently(t, func() error {
			_, err := s.operator(adminID).Login(ctx, connect.NewRequest(m))
			return err
		})
	}
	wantCode(t, login(&nexusv1.LoginRequest{Password: []byte(password)}), connect.CodeInvalidArgument, "wrong password")
	wantCode(t, login(&nexusv1.LoginRequest{Shares: shares[:2]}), connect.CodeInvalidArgument, "no shares slot")
	if err := login(&nexusv1.LoginRequest{Password: []byte(newPassword)}); err != nil {
		t.Fatalf("Login with the new password: %v", err)
	}

	s.restartKeeper()
	unsealPw := func(pw string) error {
		return patiently(t, func() error {
			_, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(pw)}))
			return err
		})
	}
	wantCode(t, unsealPw(password), connect.CodeInvalidArgument, "wrong password")
	if err := unsealPw(newPassword); err != nil {
		t.Fatalf("Unseal with the new password: %v", err)
	}
	if got, err := s.get("apps/x", 0); err != nil || got.GetData()["k"] != "v" {
		t.Fatalf("get after rekey and unseal = %v, %v", got, err)
	}

	// Re-split: new shares only; the new password goes too.
	if err := patiently(t, func() (err error) {
		r, err = rekey(s.token, &nexusv1.RekeyRequest{Password: []byte(newPassword), NewShareThreshold: 3, NewShareCount: 5})
		return err
	}); err != nil {
		t.Fatalf("Rekey to shares: %v", err)
	}
	if r.GetEpoch() != 3 || len(r.GetShares()) != 5 || !strings.Contains(string(r.GetShares()[4]), ":5-of-5:k3:") {
		t.Fatalf("Rekey to shares: epoch %d, %d shares", r.GetEpoch(), len(r.GetShares()))
	}
	s.token = r.GetToken().GetToken()
	wantCode(t, login(&nexusv1.LoginRequest{Password: []byte(newPassword)}), connect.CodeInvalidArgument, "no password slot")
	if err := login(&nexusv1.LoginRequest{Shares: r.GetShares()[1:4]}); err != nil {
		t.Fatalf("Login with 3 of the new shares: %v", err)
	}
}

// TestInitWithSharesOnly: a keyring with shares and no password unseals
// and logs in with shares; a password is refused with the reason.
func TestInitWithSharesOnly(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := t.Context()
	_, err := s.operator(adminID).Init(ctx, connect.NewRequest(&nexusv1.InitRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument, "password or shares are required")
	resp, err := s.operator(adminID).Init(ctx, connect.NewRequest(&nexusv1.InitRequest{ShareThreshold: 1, ShareCount: 2}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	s.token = resp.Msg.GetToken().GetToken()
	if len(resp.Msg.GetShares()) != 2 || s.token == "" {
		t.Fatalf("Init: %d shares, token %t", len(resp.Msg.GetShares()), s.token != "")
	}
	s.put("apps/x", map[string]string{"k": "v"})
	_, err = s.operator(adminID).Login(ctx, connect.NewRequest(&nexusv1.LoginRequest{Password: []byte(password)}))
	wantCode(t, err, connect.CodeInvalidArgument, "the keyring has no password slot: use the shares")
}
