package postgres

import (
	"bytes"
	"errors"
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
