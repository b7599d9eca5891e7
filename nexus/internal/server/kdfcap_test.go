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
	// A new keyring (format 2) keeps its Argon2id parameters in its
	// password slot: format, id (16), epoch (8), slot count, then the slot's
	// kind (1: password), body length (2) and body, which starts with the
	// parameters: version, time (4 bytes), memory in KiB (4), threads, salt.
	var sealed []byte
	if err := db.QueryRow(ctx, "SELECT sealed FROM root_keyrings").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	const slotKind, memory = 1 + 16 + 8 + 1, 1 + 16 + 8 + 1 + 1 + 2 + 5
	if len(sealed) < memory+4 || sealed[slotKind] != 1 {
		t.Fatalf("the stored keyring does not start with a password slot: % x", sealed[:min(len(sealed), 40)])
	}
	greedy := append([]byte(nil), sealed...)
	binary.BigEndian.PutUint32(greedy[memory:memory+4], 4<<20) // 4 GiB
	if _, err := db.Exec(ctx, "UPDATE root_keyrings SET sealed = $1", greedy); err != nil {
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

	if _, err := db.Exec(ctx, "UPDATE root_keyrings SET sealed = $1", sealed); err != nil {
		t.Fatal(err)
	}
	// The refused unseal counts as a failed attempt: wait out its backoff.
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.operator(adminID).Unseal(ctx, connect.NewRequest(&nexusv1.UnsealRequest{Password: []byte(password)})); err != nil {
		t.Fatalf("unseal with the real parameters: %v", err)
	}
}
