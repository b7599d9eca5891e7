package e2e_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// spikeAfterBackoff runs the CLI until Nexus stops answering "try again
// in": after refused credentials, even right ones wait.
func spikeAfterBackoff(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := spike(t, env, stdin, args...)
		if !strings.Contains(r.stderr, "try again in") || time.Now().After(deadline) {
			return r
		}
	}
}

// wantRefused checks that a spike run failed saying want.
func wantRefused(t *testing.T, what string, r result, want string) {
	t.Helper()
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("%s: exit %d, stderr %q; want a refusal saying %q", what, r.code, r.stderr, want)
	}
}

// mustAfterBackoff is spikeAfterBackoff that must exit 0.
func mustAfterBackoff(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	r := spikeAfterBackoff(t, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("spike %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// storedKeyring is the format columns of the stored root keyring.
func storedKeyring(t *testing.T, dsn string) (ciphertext, sealed int, epoch int64) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	err = conn.QueryRow(t.Context(), "SELECT length(ciphertext), coalesce(length(sealed), 0), epoch FROM root_keyrings").Scan(&ciphertext, &sealed, &epoch)
	if err != nil {
		t.Fatal(err)
	}
	return ciphertext, sealed, epoch
}

// Init with 2 of 3 shares and a password: after a seal one share does not
// unseal and two do. A rekey to a new password refuses the old password
// and the old shares from then on, in unseal and login; the new password
// works and the data is still there.
func TestSharesAndRekey(t *testing.T) {
	t.Parallel()
	s := startCluster(t, pgtest.NewRoles(t, ""), 1, 1)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	const (
		oldPassword = "correct horse battery\n"
		newPassword = "purple elephant umbrella quarry\n"
	)
	out := mustSpike(t, admin, oldPassword, "operator", "init", "--shares", "2/3", "-o", "json")
	var initDoc struct {
		Shares []string `json:"shares"`
	}
	if err := json.Unmarshal([]byte(out), &initDoc); err != nil || len(initDoc.Shares) != 3 {
		t.Fatalf("init printed %q (%v), want 3 shares", out, err)
	}
	shares := initDoc.Shares
	for i, sh := range shares {
		if want := ":" + string(rune('1'+i)) + "-of-3:k2:"; !strings.HasPrefix(sh, "spike-share-v1:") || !strings.Contains(sh, want) {
			t.Errorf("share %d = %.40q…, want it labelled %s", i+1, sh, want)
		}
	}
	mustSpike(t, admin, "", "secret", "put", "apps/keys", "k=v")

	mustSpike(t, admin, "", "operator", "seal")
	wantRefused(t, "unseal with 1 of 2 shares", spike(t, admin, shares[0]+"\n", "operator", "unseal", "--shares"),
		"not enough shares: have 1 of the 2 needed")
	mustAfterBackoff(t, admin, shares[2]+"\n"+shares[0]+"\n", "operator", "unseal", "--shares")
	if got := mustSpike(t, admin, "", "secret", "get", "apps/keys", "--field", "k"); strings.TrimSpace(got) != "v" {
		t.Fatalf("after unsealing with shares: apps/keys k = %q", got)
	}
	if c, sealed, epoch := storedKeyring(t, s.dsn); c != 0 || sealed == 0 || epoch != 1 {
		t.Errorf("stored keyring: ciphertext %d bytes, sealed %d, epoch %d; want format 2 at epoch 1", c, sealed, epoch)
	}

	out = mustAfterBackoff(t, admin, oldPassword+newPassword, "operator", "rekey")
	if !strings.Contains(out, "epoch 2") || !strings.Contains(out, "the old\npassword and every old share are refused") {
		t.Errorf("rekey printed %q", out)
	}
	if _, _, epoch := storedKeyring(t, s.dsn); epoch != 2 {
		t.Errorf("stored keyring at epoch %d after rekey, want 2", epoch)
	}

	mustSpike(t, admin, "", "operator", "seal")
	wantRefused(t, "unseal with the old password", spikeAfterBackoff(t, admin, oldPassword, "operator", "unseal"), "wrong password")
	wantRefused(t, "unseal with old shares", spikeAfterBackoff(t, admin, shares[0]+"\n"+shares[1]+"\n", "operator", "unseal", "--shares"),
		"the keyring has no shares slot")
	wantRefused(t, "login with the old password", spikeAfterBackoff(t, admin, oldPassword, "login"), "wrong password")
	mustAfterBackoff(t, admin, newPassword, "operator", "unseal")
	if got := mustSpike(t, admin, "", "secret", "get", "apps/keys", "--field", "k"); strings.TrimSpace(got) != "v" {
		t.Fatalf("after rekey and unseal: apps/keys k = %q", got)
	}
	mustAfterBackoff(t, admin, newPassword, "login")
}

// A keyring stored before format 2 (the schema 5 fixture: format 1, a
// password only) still unseals with its password, and a rekey moves it to
// format 2, emptying the format 1 columns: the old password then opens
// nothing stored.
func TestRekeyFormat1Keyring(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	if out, err := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.Owner, "-f", "testdata/schema5.sql").CombinedOutput(); err != nil {
		t.Fatalf("load testdata/schema5.sql: %v\n%s", err, out)
	}
	s := startStackOn(t, db, 1)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	const (
		oldPassword = "upgrade fixture password\n"
		newPassword = "purple elephant umbrella quarry\n"
	)
	mustSpike(t, admin, oldPassword, "operator", "unseal")
	useFixtureToken(t, s, admin, oldPassword)
	if c, sealed, epoch := storedKeyring(t, s.dsn); c == 0 || sealed != 0 || epoch != 0 {
		t.Fatalf("fixture keyring: ciphertext %d bytes, sealed %d, epoch %d; want format 1", c, sealed, epoch)
	}
	// A format 1 keyring cannot rotate: the refusal says how to move on.
	wantRefused(t, "rotate of a format 1 keyring", spike(t, admin, "", "operator", "rotate"), "rekey it once")
	out := mustSpike(t, admin, oldPassword+newPassword, "operator", "rekey", "--shares", "1/2", "-o", "json")
	var doc struct {
		Epoch  uint64   `json:"epoch"`
		Shares []string `json:"shares"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Epoch != 2 || len(doc.Shares) != 2 {
		t.Fatalf("rekey printed %q (%v), want epoch 2 and 2 shares", out, err)
	}
	if c, sealed, epoch := storedKeyring(t, s.dsn); c != 0 || sealed == 0 || epoch != 2 {
		t.Errorf("after rekey: ciphertext %d bytes, sealed %d, epoch %d; want format 2 at epoch 2", c, sealed, epoch)
	}
	// The Keeper took the rekeyed keyring (its new keyring key) without
	// an unseal, so the root key rotates right away.
	if out := mustSpike(t, admin, "", "operator", "rotate"); !strings.Contains(out, "version 2 is the only one left") {
		t.Errorf("rotate after the rekey printed %q", out)
	}
	mustSpike(t, admin, "", "operator", "seal")
	wantRefused(t, "unseal with the old password", spike(t, admin, oldPassword, "operator", "unseal"), "wrong password")
	mustAfterBackoff(t, admin, doc.Shares[1]+"\n", "operator", "unseal", "--shares")
	if got := mustSpike(t, admin, "", "secret", "get", "apps/a", "--field", "pass"); strings.TrimSpace(got) != "a-v4" {
		t.Errorf("apps/a pass = %q after rekey, want a-v4", got)
	}
	mustAfterBackoff(t, admin, newPassword, "login")
}
