package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/testkit/pgtest"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// statusKeeper is a Keeper that only answers Status, holding keyringID
// (nil: sealed).
type statusKeeper struct {
	keeperv1connect.KeeperServiceClient
	keyringID []byte
}

func (k statusKeeper) Status(context.Context, *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	return connect.NewResponse(&keeperv1.StatusResponse{Unsealed: k.keyringID != nil, KeyringId: k.keyringID}), nil
}

func TestReady(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, err := postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	keyringID := bytes.Repeat([]byte{7}, 16)
	unsealed := keeper.New([]keeper.Endpoint{{Name: "k", RPC: statusKeeper{keyringID: keyringID}}}, store, log)
	sealed := keeper.New([]keeper.Endpoint{{Name: "k", RPC: statusKeeper{}}}, store, log)

	check := func(name string, kc *keeper.Client, want string) {
		t.Helper()
		kc.Check(ctx)
		err := ready(store, kc)(ctx)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: ready = %v, want nil", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: ready = %v, want an error mentioning %q", name, err, want)
		}
	}
	check("not migrated", unsealed, "schema version is 0")
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	check("not initialised", unsealed, "not initialised")
	if err := store.CreateKeyring(ctx, audittest.Record(t, store), keeper.Keyring{ID: keyringID, KDFParams: []byte{1}, Ciphertext: []byte{2}}); err != nil {
		t.Fatal(err)
	}
	check("Keeper sealed", sealed, "sealed")
	check("ready", unsealed, "")
	store.Close()
	check("database closed", unsealed, "database")
}
