package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// dataKeyVersions counts the stored data keys by the root key version
// that wraps them.
func dataKeyVersions(t *testing.T, dsn string) map[int32]int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), "SELECT root_key_version, count(*) FROM data_keys GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int{}
	for rows.Next() {
		var v int32
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		out[v] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// spike operator rotate under a storm of reads and writes on two Nexus
// replicas, with three Keepers, one of them dead during the rotation: not
// one request fails; afterwards every data key is wrapped under the new
// version, the old version is gone from every Keeper (the one that was
// dead takes the new epoch from a peer when it returns), values written
// before the rotation still read, and the audit trail holds the steps.
func TestRotateUnderLoad(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	// Data keys stay in Nexus's memory for a second only, so that the
	// storm keeps asking the Keepers to unwrap them while they are
	// re-wrapped and the old version destroyed.
	s := startCluster(t, db, 2, 3, "SPIKE_DATA_KEY_CACHE_TTL=1s")
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	ctx := t.Context()
	fixed := map[string]string{}
	for i := range 5 {
		path := fmt.Sprintf("rotate/old%d", i)
		for v := 1; v <= 2; v++ {
			mustSpike(t, admin, "", "secret", "put", path, fmt.Sprintf("n=old%d.%d", i, v))
		}
		fixed[path] = fmt.Sprintf("old%d.2", i)
	}
	before := dataKeyVersions(t, db.Admin)
	if len(before) != 1 || before[1] == 0 {
		t.Fatalf("data keys before the rotation: %v, want all under version 1", before)
	}

	s0, op := s.noRetryClients(t, 0)
	s1, _ := s.noRetryClients(t, 1)
	st := startStorm(ctx, []nexusv1connect.SecretServiceClient{s0, s1}, 4, "rotate/w", fixed)
	time.Sleep(1500 * time.Millisecond)

	// Keeper 3 is away for the rotation.
	s.keepers[2].Kill()
	out := mustSpike(t, admin, "", "operator", "rotate", "--batch", "1")
	if !strings.Contains(out, "Root key rotated: version 2 is the only one left") {
		t.Errorf("rotate printed %q", out)
	}
	time.Sleep(1500 * time.Millisecond)
	s.keepers[2].Restart()
	s.keepers[2].WaitListening(s.keeperAddrs[2])
	waitFor(t, "Keeper 3 to take the rotated keyring from a peer", func() bool {
		k := keeperStatus(t, op, 2)
		return k.GetHoldsKeyring() && k.GetActiveKeyVersion() == 2
	})
	time.Sleep(1500 * time.Millisecond)
	ok, failures := st.finish()
	t.Logf("%d rounds of writes and reads succeeded during the rotation; %d failed", ok, len(failures))
	if len(failures) > 0 {
		t.Errorf("requests failed during the rotation:\n%s", strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if ok == 0 {
		t.Fatal("no request succeeded")
	}

	after := dataKeyVersions(t, db.Admin)
	if len(after) != 1 || after[2] == 0 {
		t.Errorf("data keys after the rotation: %v, want all under version 2", after)
	}
	for i := range 3 {
		k := keeperStatus(t, op, i)
		if !k.GetHoldsKeyring() || k.GetActiveKeyVersion() != 2 || k.GetOldestKeyVersion() != 2 {
			t.Errorf("Keeper %d after the rotation: %v; want versions 2..2", i+1, k)
		}
	}
	for path, want := range fixed {
		if err := readBack(ctx, s0, path, want); err != nil {
			t.Error(err)
		}
	}
	if got := mustSpike(t, admin, "", "secret", "get", "rotate/old0", "--version", "1"); !strings.Contains(got, "old0.1") {
		t.Errorf("an older version written before the rotation reads %q", got)
	}

	// A second rotation runs the same way; a repeat of its first step
	// with the version seen before is refused, not applied twice.
	if out := mustSpike(t, admin, "", "operator", "rotate"); !strings.Contains(out, "version 3 is the only one left") {
		t.Errorf("second rotate printed %q", out)
	}
	for _, rpc := range []string{"RotateRootKey", "RewrapDataKeys", "DestroyOldRootKeys"} {
		audit := mustSpike(t, admin, "", "audit", "list", "--rpc", rpc, "--limit", "0", "-o", "json")
		if n := strings.Count(audit, "OperatorService/"+rpc); n < 2 || !strings.Contains(audit, identity.Pilot(td).String()) {
			t.Errorf("the audit trail holds %d records of %s by the admin, want at least 2 (one per rotation)", n, rpc)
		}
	}
	if out := mustSpike(t, admin, "", "audit", "verify"); !strings.Contains(strings.ToLower(out), "ok") {
		t.Errorf("audit verify: %s", out)
	}
}

// dataKeyRefs returns the data key ids that secret heads and retained
// versions name.
func dataKeyRefs(t *testing.T, dsn string) map[string]bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), `SELECT encode(substring(head FROM 2 FOR 16), 'hex') FROM secrets
		UNION SELECT encode(dek_id, 'hex') FROM secret_versions WHERE sealed IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// spike operator rewrap under a storm: secrets sealed under an older data
// key (the one a previous Nexus process used) are sealed again under the
// one in use, with no failed request; every version still reads; and once
// the old key is old enough it is retired (deleted), while the audit key
// and the key in use stay.
func TestRewrapUnderLoad(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	s := startCluster(t, db, 1, 2, "SPIKE_DATA_KEY_CACHE_TTL=1s")
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	fixed := map[string]string{}
	for i := range 20 {
		path := fmt.Sprintf("rewrap/old%d", i)
		for v := 1; v <= 2; v++ {
			mustSpike(t, admin, "", "secret", "put", path, fmt.Sprintf("n=old%d.%d", i, v))
		}
		fixed[path] = fmt.Sprintf("old%d.2", i)
	}
	mustSpike(t, admin, "", "secret", "delete", "rewrap/old0", "--versions", "1")
	mustSpike(t, admin, "", "secret", "destroy", "rewrap/old1", "--versions", "1")
	oldRefs := dataKeyRefs(t, db.Admin)

	// A new Nexus process seals with a data key of its own.
	s.nexus[0].Stop()
	s.nexus[0].Restart()
	s.nexus[0].WaitListening(s.nexusAddrs[0])
	secrets, _ := s.noRetryClients(t, 0)
	ctx := t.Context()
	st := startStorm(ctx, []nexusv1connect.SecretServiceClient{secrets}, 3, "rewrap/w", fixed)
	time.Sleep(time.Second)
	out := mustSpike(t, admin, "", "operator", "rewrap", "--batch", "3", "--rate", "100")
	time.Sleep(time.Second)
	ok, failures := st.finish()
	t.Logf("%d rounds of writes and reads succeeded during the rewrap; %d failed", ok, len(failures))
	if len(failures) > 0 {
		t.Errorf("requests failed during the rewrap:\n%s", strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if ok == 0 {
		t.Fatal("no request succeeded")
	}
	if !strings.Contains(out, "Sealed 20 secrets again") {
		t.Errorf("rewrap printed %q, want 20 secrets sealed again", out)
	}
	newRefs := dataKeyRefs(t, db.Admin)
	for id := range newRefs {
		if oldRefs[id] {
			t.Errorf("data key %s, used before the restart, is still named by a secret after the rewrap", id)
		}
	}
	if len(newRefs) != 1 {
		t.Errorf("after the rewrap secrets name %d data keys, want the one in use only", len(newRefs))
	}
	for path, want := range fixed {
		if err := readBack(ctx, secrets, path, want); err != nil {
			t.Error(err)
		}
	}
	if got := mustSpike(t, admin, "", "secret", "get", "rewrap/old2", "--version", "1"); !strings.Contains(got, "old2.1") {
		t.Errorf("an older version reads %q after the rewrap", got)
	}
	if r := spike(t, admin, "", "secret", "get", "rewrap/old1", "--version", "1"); r.code == 0 {
		t.Errorf("a destroyed version reads after the rewrap: %s", r.stdout)
	}

	// The old keys are too young to retire yet; aged (as if an hour and a
	// quarter had passed), they go, except the audit key.
	before := dataKeyCount(t, db.Admin)
	conn, err := pgx.Connect(ctx, db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE data_keys SET created_at = created_at - interval '75 minutes'`); err != nil {
		t.Fatal(err)
	}
	out = mustSpike(t, admin, "", "operator", "rewrap")
	after := dataKeyCount(t, db.Admin)
	if after >= before || !strings.Contains(out, fmt.Sprintf("Retired %d data keys", before-after)) {
		t.Errorf("retire: %d data keys before, %d after; rewrap printed %q", before, after, out)
	}
	var auditKey int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM data_keys d JOIN audit_keys a ON a.dek_id = d.id`).Scan(&auditKey); err != nil || auditKey != 1 {
		t.Errorf("the audit key was retired (%d left, %v)", auditKey, err)
	}
	for path, want := range fixed {
		if err := readBack(ctx, secrets, path, want); err != nil {
			t.Error(err)
		}
	}
	if out := mustSpike(t, admin, "", "audit", "verify"); !strings.Contains(strings.ToLower(out), "ok") {
		t.Errorf("audit verify: %s", out)
	}
}

// dataKeyCount is the number of stored data keys.
func dataKeyCount(t *testing.T, dsn string) int {
	t.Helper()
	n := 0
	for _, c := range dataKeyVersions(t, dsn) {
		n += c
	}
	return n
}

// The version a data key's row names is a plain column: a database writer
// who makes a key still wrapped under the old version claim the new one
// cannot make rotate destroy the old version (which would lose that key
// for good). The destruction is refused, nothing is destroyed, and once
// the row is repaired rotate finishes.
func TestDestroyRefusesAForgedVersion(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	s := startCluster(t, db, 1, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "forged/a", "n=1")
	conn, err := pgx.Connect(t.Context(), db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	type row struct{ id, wrapped []byte }
	var before []row
	rows, err := conn.Query(t.Context(), `SELECT id, wrapped FROM data_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.wrapped); err != nil {
			t.Fatal(err)
		}
		before = append(before, r)
	}
	rows.Close()

	mustSpike(t, admin, "", "operator", "rotate", "--keep-old")
	// Put one key's old wrapping (under version 1) back, claiming 2.
	if _, err := conn.Exec(t.Context(), `UPDATE data_keys SET wrapped = $2 WHERE id = $1`, before[0].id, before[0].wrapped); err != nil {
		t.Fatal(err)
	}
	r := spike(t, admin, "", "operator", "rotate")
	if r.code == 0 || !strings.Contains(r.stderr, "does not unwrap under root key version 2, which its row names: nothing destroyed") {
		t.Errorf("rotate with a forged version column: exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
	_, op := s.noRetryClients(t, 0)
	if k := keeperStatus(t, op, 0); k.GetOldestKeyVersion() != 1 {
		t.Errorf("version 1 was destroyed although a data key is still wrapped under it: %v", k)
	}
	// Repaired (the row says what it is wrapped under), rotate re-wraps it
	// and finishes.
	if _, err := conn.Exec(t.Context(), `UPDATE data_keys SET root_key_version = 1 WHERE id = $1`, before[0].id); err != nil {
		t.Fatal(err)
	}
	if out := mustSpike(t, admin, "", "operator", "rotate"); !strings.Contains(out, "version 2 is the only one left") {
		t.Errorf("rotate after the repair printed %q", out)
	}
	if got := mustSpike(t, admin, "", "secret", "get", "forged/a", "--field", "n"); strings.TrimSpace(got) != "1" {
		t.Errorf("forged/a reads %q after the rotation", got)
	}
}

// A rotation committed in the database that never reached the Keepers
// (Nexus stopped right after the commit) needs no human: the first new
// data key a Keeper wraps at the old epoch is refused by the database, and
// Nexus hands the Keepers the stored keyring, which they open with the
// keyring key they hold; the write, retried, succeeds.
func TestRotationThatNeverReachedTheKeepersHeals(t *testing.T) {
	t.Parallel()
	db := pgtest.NewRoles(t, "")
	s := startCluster(t, db, 1, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "heal/a", "n=1")
	conn, err := pgx.Connect(t.Context(), db.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	keyring := func() (sealed []byte, epoch int64) {
		t.Helper()
		if err := conn.QueryRow(t.Context(), `SELECT sealed, epoch FROM root_keyrings`).Scan(&sealed, &epoch); err != nil {
			t.Fatal(err)
		}
		return sealed, epoch
	}
	setKeyring := func(sealed []byte, epoch int64) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), `UPDATE root_keyrings SET sealed = $1, epoch = $2`, sealed, epoch); err != nil {
			t.Fatal(err)
		}
	}
	oldSealed, oldEpoch := keyring()
	// The rotation's first step only: every data key stays under version 1.
	_, op := s.noRetryClients(t, 0)
	if _, err := op.RotateRootKey(t.Context(), connect.NewRequest(&nexusv1.RotateRootKeyRequest{ExpectedActiveVersion: 1})); err != nil {
		t.Fatal(err)
	}
	newSealed, newEpoch := keyring()

	// Fresh processes holding the epoch before the rotation...
	setKeyring(oldSealed, oldEpoch)
	s.nexus[0].Stop()
	s.keeper.Stop()
	s.keeper.Restart()
	s.keeper.WaitListening(s.keeperAddr)
	s.nexus[0].Restart()
	s.nexus[0].WaitListening(s.nexusAddrs[0])
	mustSpike(t, admin, "correct horse battery\n", "operator", "unseal")
	_, op = s.noRetryClients(t, 0)
	if k := keeperStatus(t, op, 0); k.GetEpoch() != uint64(oldEpoch) {
		t.Fatalf("Keeper holds epoch %d, want %d", k.GetEpoch(), oldEpoch)
	}
	// ...while the database holds the rotation, committed.
	setKeyring(newSealed, newEpoch)

	mustSpike(t, admin, "", "secret", "put", "heal/b", "n=2")
	if k := keeperStatus(t, op, 0); k.GetEpoch() != uint64(newEpoch) || k.GetActiveKeyVersion() != 2 {
		t.Errorf("after the write, Keeper holds epoch %d version %d; want epoch %d version 2", k.GetEpoch(), k.GetActiveKeyVersion(), newEpoch)
	}
	if v := dataKeyVersions(t, db.Admin); v[1] == 0 || v[2] == 0 {
		t.Errorf("data keys by version: %v; want the old ones under 1 and the new one under 2", v)
	}
	for path, want := range map[string]string{"heal/a": "1", "heal/b": "2"} {
		if got := mustSpike(t, admin, "", "secret", "get", path, "--field", "n"); strings.TrimSpace(got) != want {
			t.Errorf("%s reads %q, want %q", path, got, want)
		}
	}
	// The rotation then finishes as usual.
	if out := mustSpike(t, admin, "", "operator", "rotate"); !strings.Contains(out, "version 2 is the only one left") {
		t.Errorf("rotate printed %q", out)
	}
}
