package server_test

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// A database writer cannot make Keeper allocate gigabytes: the stored
// keyring's Argon2id parameters edited to demand 4 GiB of memory are refused
// as a corrupt keyring before any key derivation, and the real parameters
// still unseal.
func TestEditedKDFParamsAreCapped(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	db := s.db()
	var params []byte
	if err := db.QueryRow(ctx, "SELECT kdf_params FROM root_keyrings").Scan(&params); err != nil {
		t.Fatal(err)
	}
	// The encoding: version, time (4 bytes), memory in KiB (4), threads, salt.
	greedy := append([]byte(nil), params...)
	binary.BigEndian.PutUint32(greedy[5:9], 4<<20) // 4 GiB
	if _, err := db.Exec(ctx, "UPDATE root_keyrings SET kdf_params = $1", greedy); err != nil {
		t.Fatal(err)
	}
	s.restartKeeper()

	var before runtime.MemStats
	runtime.ReadMemStats(&before) // Keeper runs in this process (keepertest)
	_, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)}))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	wantCode(t, err, connect.CodeDataLoss, "over the cap")
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("refusing the edited parameters allocated %d MiB", grew>>20)
	}

	if _, err := db.Exec(ctx, "UPDATE root_keyrings SET kdf_params = $1", params); err != nil {
		t.Fatal(err)
	}
	// The refused unseal counts as a failed attempt: wait out its backoff.
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)})); err != nil {
		t.Fatalf("unseal with the real parameters: %v", err)
	}
}
