package keeper

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// fakeKeeper holds keyring "k" or nothing, or is down (err), and counts
// the data key calls it answers.
type fakeKeeper struct {
	keeperv1connect.KeeperServiceClient
	holds atomic.Bool
	down  atomic.Pointer[error]
	calls atomic.Int32
	seals atomic.Int32
}

func (f *fakeKeeper) fail() error {
	if p := f.down.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *fakeKeeper) Status(context.Context, *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	resp := &keeperv1.StatusResponse{}
	if f.holds.Load() {
		resp.Unsealed, resp.KeyringId = true, []byte("k")
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeKeeper) DecryptDataKey(context.Context, *connect.Request[keeperv1.DecryptDataKeyRequest]) (*connect.Response[keeperv1.DecryptDataKeyResponse], error) {
	f.calls.Add(1)
	if err := f.fail(); err != nil {
		return nil, err
	}
	if !f.holds.Load() {
		return nil, refusalErr(connect.CodeFailedPrecondition, keeperv1.ErrorDetail_REASON_SEALED, "keeper is sealed")
	}
	return connect.NewResponse(&keeperv1.DecryptDataKeyResponse{Plaintext: []byte("dek")}), nil
}

func (f *fakeKeeper) Seal(context.Context, *connect.Request[keeperv1.SealRequest]) (*connect.Response[keeperv1.SealResponse], error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.seals.Add(1)
	was := f.holds.Swap(false)
	return connect.NewResponse(&keeperv1.SealResponse{WasUnsealed: was}), nil
}

func (f *fakeKeeper) kill() {
	err := error(connect.NewError(connect.CodeUnavailable, errors.New("connection refused")))
	f.down.Store(&err)
}

func threeKeepers(t *testing.T) (*Client, []*fakeKeeper) {
	t.Helper()
	fakes := []*fakeKeeper{{}, {}, {}}
	var eps []Endpoint
	for i, f := range fakes {
		f.holds.Store(true)
		eps = append(eps, Endpoint{Name: string(rune('a' + i)), RPC: f})
	}
	c := New(eps, storedKeyring{}, slog.New(slog.DiscardHandler))
	if st := c.Check(t.Context()); !st.Unsealed || len(st.holders()) != 3 {
		t.Fatalf("state = %+v, want three Keepers holding the keyring", st)
	}
	return c, fakes
}

// A Keeper that dies or loses the keyring costs no request: the next one
// answers at once, and is asked first from then on.
func TestFailover(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	ctx := t.Context()
	fakes[0].kill()
	fakes[1].holds.Store(false)
	for range 3 {
		if _, err := c.DecryptDataKey(ctx, []byte("id"), []byte("w"), 1); err != nil {
			t.Fatalf("DecryptDataKey with one Keeper left: %v", err)
		}
	}
	if got := []int32{fakes[0].calls.Load(), fakes[1].calls.Load(), fakes[2].calls.Load()}; got[0]+got[1] > 2 || got[2] != 3 {
		t.Errorf("calls per Keeper = %v: the failed ones were asked again", got)
	}
	st := c.State()
	if !st.Unsealed || st.Keepers[0].Err == nil || st.Keepers[1].Holds || !st.Keepers[2].Holds {
		t.Errorf("state = %+v, want a unreachable, b sealed, c holding", st.Keepers)
	}

	// The last one goes too: SPIKE is sealed, and says why.
	fakes[2].kill()
	_, err := c.DecryptDataKey(ctx, []byte("id"), []byte("w"), 1)
	if fault.CodeOf(err) != fault.FailedPrecondition || !strings.Contains(err.Error(), "SPIKE is sealed") {
		t.Errorf("with no Keeper holding the keyring: %v, want the sealed error", err)
	}
	if c.Unsealed() {
		t.Error("client still unsealed")
	}
}

// With no Keeper answering at all, SPIKE is sealed and Unavailable.
func TestAllKeepersDown(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	for _, f := range fakes {
		f.kill()
	}
	_, err := c.DecryptDataKey(t.Context(), []byte("id"), []byte("w"), 1)
	if fault.CodeOf(err) != fault.Unavailable || !strings.Contains(err.Error(), "no Keeper answered") {
		t.Errorf("error = %v, want Unavailable: no Keeper answered", err)
	}
	st := c.Check(t.Context())
	if st.Unsealed || st.KeeperErr == nil {
		t.Errorf("Check = %+v, want sealed with a Keeper error", st)
	}
}

// Seal reaches every Keeper; one that cannot be reached is reported, as it
// may still hold the keyring. Only when none is reached is it Unavailable:
// nothing happened.
func TestSealEveryKeeper(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	fakes[1].kill()
	results, err := c.Seal(t.Context())
	if err != nil {
		t.Errorf("Seal with one Keeper down: %v, want the results", err)
	}
	if len(results) != 3 || results[1].Err == nil || results[0].Err != nil || results[2].Err != nil {
		t.Errorf("results = %+v", results)
	}
	if fakes[0].seals.Load() != 1 || fakes[2].seals.Load() != 1 {
		t.Error("a reachable Keeper was not sealed")
	}
	if c.Unsealed() {
		t.Error("client unsealed after Seal")
	}
	fakes[0].kill()
	fakes[2].kill()
	if _, err := c.Seal(t.Context()); fault.CodeOf(err) != fault.Unavailable {
		t.Errorf("Seal with every Keeper down: %v, want Unavailable", err)
	}
}
