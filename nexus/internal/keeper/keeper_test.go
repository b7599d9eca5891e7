package keeper

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	// slow delays every answer (a Keeper under load), honouring the
	// caller's deadline.
	slow     atomic.Int64
	sealFail atomic.Bool
	calls    atomic.Int32
	seals    atomic.Int32
	unseals  atomic.Int32
}

// wait delays an answer by f.slow, or until ctx ends.
func (f *fakeKeeper) wait(ctx context.Context) error {
	select {
	case <-time.After(time.Duration(f.slow.Load())):
		return nil
	case <-ctx.Done():
		return connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
}

func (f *fakeKeeper) Unseal(context.Context, *connect.Request[keeperv1.UnsealRequest]) (*connect.Response[keeperv1.UnsealResponse], error) {
	f.unseals.Add(1)
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.holds.Store(true)
	return connect.NewResponse(&keeperv1.UnsealResponse{KeyringId: []byte("k")}), nil
}

func (f *fakeKeeper) fail() error {
	if p := f.down.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *fakeKeeper) Status(ctx context.Context, _ *connect.Request[keeperv1.StatusRequest]) (*connect.Response[keeperv1.StatusResponse], error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	resp := &keeperv1.StatusResponse{}
	if f.holds.Load() {
		resp.Unsealed, resp.KeyringId = true, []byte("k")
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeKeeper) DecryptDataKey(ctx context.Context, _ *connect.Request[keeperv1.DecryptDataKeyRequest]) (*connect.Response[keeperv1.DecryptDataKeyResponse], error) {
	f.calls.Add(1)
	if err := f.fail(); err != nil {
		return nil, err
	}
	if err := f.wait(ctx); err != nil {
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
	if f.sealFail.Load() {
		return nil, connect.NewError(connect.CodeInternal, errors.New("internal error"))
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

// A Keeper that is slow is not taken for dead: the last one left gets the
// caller's whole deadline, one slow answer to Check does not seal SPIKE,
// and a failed call does not drop the cached keys (only Check can).
func TestSlowKeeperIsNotSealed(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	var drops atomic.Int32
	c.OnSeal(func() { drops.Add(1) })
	fakes[0].kill()
	fakes[1].kill()
	fakes[2].slow.Store(int64(attemptTimeout + 300*time.Millisecond))
	if _, err := c.DecryptDataKey(t.Context(), []byte("id"), []byte("w"), 1); err != nil {
		t.Fatalf("the last Keeper, slower than one attempt: %v", err)
	}
	if drops.Load() != 0 {
		t.Error("failed calls dropped the cached keys")
	}
	fakes[2].slow.Store(int64(keeperCheckTimeout + 200*time.Millisecond))
	if st := c.Check(t.Context()); !st.Unsealed || !st.Keepers[2].Suspect {
		t.Errorf("after one slow answer: %+v, want unsealed with Keeper 3 suspect", st.Keepers[2])
	}
	if st := c.Check(t.Context()); st.Unsealed {
		t.Error("after two slow answers in a row: still unsealed")
	}
	if drops.Load() == 0 {
		t.Error("Check found no Keeper holding the keyring but kept the cached keys")
	}
}

// Unseal asks every Keeper without the keyring and one that holds it (to
// judge the password), not every holder: each asked runs a key derivation.
func TestUnsealAsksWhoNeedsIt(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	fakes[1].holds.Store(false)
	c.Check(t.Context())
	if err := c.Unseal(t.Context(), Credentials{Password: []byte("password")}, Keyring{ID: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if got := []int32{fakes[0].unseals.Load(), fakes[1].unseals.Load(), fakes[2].unseals.Load()}; got[0]+got[2] != 1 || got[1] != 1 {
		t.Errorf("unseals per Keeper = %v, want one holder and the Keeper without the keyring", got)
	}
}

// A Keeper that fails Seal but still answers Status holding the keyring is
// not reported sealed.
func TestSealNotConfirmed(t *testing.T) {
	t.Parallel()
	c, fakes := threeKeepers(t)
	fakes[2].sealFail.Store(true)
	results, err := c.Seal(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Sealed || !results[1].Sealed || results[2].Sealed {
		t.Errorf("results = %+v, want the third unconfirmed", results)
	}
	if !c.Unsealed() {
		t.Error("with a Keeper still holding the keyring, the client says sealed")
	}
}
