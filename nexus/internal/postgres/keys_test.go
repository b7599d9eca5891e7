package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
)

func TestKeyring(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()

	if ok, err := s.Initialized(ctx); err != nil || ok {
		t.Errorf("Initialized before init = %v, %v; want false, nil", ok, err)
	}
	_, err := s.Keyring(ctx)
	wantCode(t, err, fault.FailedPrecondition, "SPIKE is not initialised: run `spike operator init`")

	k := keeper.Keyring{ID: []byte("id-1"), KDFParams: []byte("argon2id"), Ciphertext: []byte("sealed")}
	if err := s.CreateKeyring(ctx, auditRec(t, s), k); err != nil {
		t.Fatalf("CreateKeyring: %v", err)
	}
	got, err := s.Keyring(ctx)
	if err != nil {
		t.Fatalf("Keyring: %v", err)
	}
	if diff := cmp.Diff(k, got, cmpopts.IgnoreFields(keeper.Keyring{}, "CreatedAt")); diff != "" {
		t.Errorf("Keyring mismatch (-want +got):\n%s", diff)
	}
	if time.Since(got.CreatedAt) > time.Minute {
		t.Errorf("CreatedAt = %v, want about now", got.CreatedAt)
	}
	if ok, err := s.Initialized(ctx); err != nil || !ok {
		t.Errorf("Initialized after init = %v, %v; want true, nil", ok, err)
	}
	err = s.CreateKeyring(ctx, auditRec(t, s), keeper.Keyring{ID: []byte("id-2"), KDFParams: []byte("p"), Ciphertext: []byte("c")})
	wantCode(t, err, fault.FailedPrecondition, "SPIKE is already initialised")
	if got, _ := s.Keyring(ctx); !bytes.Equal(got.ID, k.ID) {
		t.Errorf("second CreateKeyring replaced the keyring: id %q", got.ID)
	}
}

func TestCreateKeyringConcurrent(t *testing.T) {
	t.Parallel()
	s, dsn := newStore(t)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.CreateKeyring(t.Context(), auditRec(t, s), keeper.Keyring{
				ID: []byte{byte(i)}, KDFParams: []byte("p"), Ciphertext: []byte("c"),
			})
		})
	}
	wg.Wait()
	successes := 0
	for _, err := range errs {
		switch {
		case err == nil:
			successes++
		case fault.CodeOf(err) != fault.FailedPrecondition:
			t.Errorf("CreateKeyring: unexpected error %v", err)
		}
	}
	if successes != 1 {
		t.Errorf("%d CreateKeyring calls succeeded, want 1", successes)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rows int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM root_keyrings").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("root_keyrings has %d rows, want 1", rows)
	}
}

func TestDataKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	k := envelope.WrappedKey{ID: bytes.Repeat([]byte{7}, 16), RootKeyVersion: 3, Wrapped: []byte("wrapped")}
	if err := s.CreateDataKey(ctx, k); err != nil {
		t.Fatalf("CreateDataKey: %v", err)
	}
	got, err := s.DataKey(ctx, k.ID)
	if err != nil {
		t.Fatalf("DataKey: %v", err)
	}
	if diff := cmp.Diff(k, got, cmpopts.IgnoreFields(envelope.WrappedKey{}, "CreatedAt")); diff != "" {
		t.Errorf("DataKey mismatch (-want +got):\n%s", diff)
	}

	_, err = s.DataKey(ctx, bytes.Repeat([]byte{8}, 16))
	wantCode(t, err, fault.DataLoss, "data key 08080808080808080808080808080808 is missing")

	if err := s.CreateDataKey(ctx, k); err == nil || fault.CodeOf(err) != 0 {
		t.Errorf("CreateDataKey with a duplicate id: error = %v, want an internal error", err)
	}
	err = s.CreateDataKey(ctx, envelope.WrappedKey{ID: []byte("short"), RootKeyVersion: 1, Wrapped: []byte("w")})
	if err == nil {
		t.Error("CreateDataKey with a 5-byte id succeeded")
	}
	err = s.CreateDataKey(ctx, envelope.WrappedKey{ID: bytes.Repeat([]byte{9}, 16), RootKeyVersion: 1 << 31, Wrapped: []byte("w")})
	if err == nil || errors.As(err, new(*fault.Error)) {
		t.Errorf("CreateDataKey with root key version 2^31: error = %v, want an internal error", err)
	}
}

// A data key wrapped by a Keeper at an older epoch than the stored
// keyring's (it missed a rotation) is not stored: its version may be
// destroyed. One at the stored epoch, or a newer one, is.
func TestDataKeyFromAStaleKeeperIsRefused(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.CreateKeyring(ctx, auditRec(t, s), keeper.Keyring{ID: []byte("id-1"), Sealed: []byte("sealed"), Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		epoch  uint64
		stored bool
	}{{2, false}, {0, false}, {3, true}, {4, true}} {
		id := bytes.Repeat([]byte{byte(tt.epoch + 1)}, 16)
		err := s.CreateDataKey(ctx, envelope.WrappedKey{ID: id, RootKeyVersion: 1, Wrapped: []byte("w"), Epoch: tt.epoch})
		_, rerr := s.DataKey(ctx, id)
		if tt.stored {
			if err != nil || rerr != nil {
				t.Errorf("epoch %d: CreateDataKey = %v, DataKey = %v; want stored", tt.epoch, err, rerr)
			}
			continue
		}
		wantCode(t, err, fault.Unavailable, fmt.Sprintf("the Keeper wrapped the data key at keyring epoch %d, older than the stored keyring's 3 (it missed a rotation): nothing was stored; retry", tt.epoch))
		if rerr == nil {
			t.Errorf("epoch %d: the refused data key was stored", tt.epoch)
		}
	}
}

// TestUpdateKeyring checks a rekey's write: format 1 becomes format 2 with
// the format 1 columns emptied, and only a writer that read the keyring as
// it is stored replaces it.
func TestUpdateKeyring(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	v1 := keeper.Keyring{ID: []byte("id-1"), KDFParams: []byte("argon2id"), Ciphertext: []byte("sealed")}
	if err := s.CreateKeyring(ctx, auditRec(t, s), v1); err != nil {
		t.Fatalf("CreateKeyring: %v", err)
	}
	e1 := keeper.Keyring{ID: v1.ID, Sealed: []byte("format 2, epoch 1"), Epoch: 1}
	if err := s.UpdateKeyring(ctx, auditRec(t, s), v1, e1); err != nil {
		t.Fatalf("UpdateKeyring format 1 → 2: %v", err)
	}
	got, err := s.Keyring(ctx)
	if err != nil {
		t.Fatalf("Keyring: %v", err)
	}
	if diff := cmp.Diff(e1, got, cmpopts.IgnoreFields(keeper.Keyring{}, "CreatedAt")); diff != "" {
		t.Errorf("Keyring after rekey (-want +got):\n%s", diff)
	}
	e2 := keeper.Keyring{ID: v1.ID, Sealed: []byte("format 2, epoch 2"), Epoch: 2}
	for _, stale := range []keeper.Keyring{v1, {ID: v1.ID, Sealed: []byte("format 2, other"), Epoch: 1}, {ID: v1.ID, Sealed: e1.Sealed, Epoch: 7}} {
		err := s.UpdateKeyring(ctx, auditRec(t, s), stale, e2)
		wantCode(t, err, fault.Aborted, "the stored keyring changed meanwhile (another rekey?): read it again and retry")
	}
	if err := s.UpdateKeyring(ctx, auditRec(t, s), e1, keeper.Keyring{ID: []byte("id-2"), Sealed: []byte("x"), Epoch: 2}); err == nil {
		t.Error("UpdateKeyring to another keyring id succeeded")
	}

	// Of concurrent rekeys from the same keyring, exactly one is stored.
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.UpdateKeyring(ctx, auditRec(t, s), e1, keeper.Keyring{ID: v1.ID, Sealed: []byte{byte(i)}, Epoch: 2})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case fault.CodeOf(err) != fault.Aborted:
			t.Errorf("concurrent UpdateKeyring: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent UpdateKeyring calls succeeded, want 1", won)
	}
}
