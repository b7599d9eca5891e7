package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
