package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// noRetryClients are the admin's secret and operator clients of replica i
// that never retry: every failure the test causes reaches the test.
func (s *stack) noRetryClients(t *testing.T, i int) (nexusv1connect.SecretServiceClient, nexusv1connect.OperatorServiceClient) {
	t.Helper()
	src, err := s.ca.Source(identity.Pilot(td))
	if err != nil {
		t.Fatal(err)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))),
		rpcclient.Options{MaxRetries: rpcclient.NoRetries})
	t.Cleanup(httpClient.CloseIdleConnections)
	url := "https://" + s.nexusAddrs[i]
	return nexusv1connect.NewSecretServiceClient(httpClient, url, bearer(s.adminToken)),
		nexusv1connect.NewOperatorServiceClient(httpClient, url, bearer(s.adminToken))
}

// keeperStatus returns Nexus's view of Keeper i (0-based).
func keeperStatus(t *testing.T, op nexusv1connect.OperatorServiceClient, i int) *nexusv1.KeeperStatus {
	t.Helper()
	resp, err := op.Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{}))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	ks := resp.Msg.GetKeepers()
	if len(ks) <= i {
		t.Fatalf("status shows %d Keepers, want at least %d", len(ks), i+1)
	}
	return ks[i]
}

// waitReseeded waits until Keeper i holds the keyring again, given by a
// peer, and returns how long it took from start.
func waitReseeded(t *testing.T, op nexusv1connect.OperatorServiceClient, i int, start time.Time) time.Duration {
	t.Helper()
	var took time.Duration
	waitFor(t, fmt.Sprintf("Keeper %d to re-seed from a peer", i+1), func() bool {
		k := keeperStatus(t, op, i)
		took = time.Since(start)
		return k.GetHoldsKeyring() && strings.HasPrefix(k.GetSource(), "peer ")
	})
	return took
}

// No single Keeper is needed: three Keepers serve a storm of reads and
// writes while they are killed one at a time, and not one request fails
// while one of them lives. A restarted Keeper takes the root key from a
// peer without anyone unsealing it. With every Keeper gone, requests fail
// with the sealed error within a second; unsealing the one Keeper that is
// back is enough, as the others re-seed from it when they return.
func TestKeepersWithoutASinglePointOfFailure(t *testing.T) {
	t.Parallel()
	// Data keys stay in Nexus's memory for a second only, so that the
	// storm keeps asking the Keepers for them; and Nexus does not look at
	// the Keepers on its own (only when status asks), so that it learns of
	// a dead Keeper by calling it: each kill must be ridden through by
	// failing over within the request.
	s := startCluster(t, pgtest.NewRoles(t, ""), 1, 3, "SPIKE_DATA_KEY_CACHE_TTL=1s", "SPIKE_KEEPER_CHECK_INTERVAL=1m")
	s.initialise(t)
	secrets, op := s.noRetryClients(t, 0)
	ctx := t.Context()
	for i := range 3 {
		if k := keeperStatus(t, op, i); !k.GetHoldsKeyring() {
			t.Fatalf("after init, Keeper %d does not hold the keyring: %v", i+1, k)
		}
	}

	// The storm: each worker writes its own secret and reads it back.
	st := startStorm(ctx, []nexusv1connect.SecretServiceClient{secrets}, 4, "keepers/w", nil)
	// Each phase outlives the data key cache.
	pause := func() { time.Sleep(1500 * time.Millisecond) }

	pause()
	s.keepers[0].Kill()
	pause()
	s.keepers[1].Kill()
	pause() // Keeper 3 alone.
	restarted := time.Now()
	s.keepers[0].Restart()
	s.keepers[0].WaitListening(s.keeperAddrs[0])
	took := waitReseeded(t, op, 0, restarted)
	t.Logf("Keeper 1 re-seeded from a peer %v after its restart", took.Round(time.Millisecond))
	s.keepers[2].Kill() // Keeper 1 alone, with the key a peer gave it.
	pause()
	s.keepers[1].Restart()
	s.keepers[1].WaitListening(s.keeperAddrs[1])
	waitReseeded(t, op, 1, time.Now())
	pause()
	ok, failures := st.finish()
	t.Logf("%d reads and writes succeeded while Keepers were killed and restarted; %d failed", ok, len(failures))
	if len(failures) > 0 {
		t.Errorf("requests failed while a Keeper held the root key:\n%s", strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if ok == 0 {
		t.Fatal("no request succeeded")
	}

	// Every Keeper gone: as soon as Nexus needs a key it has not cached
	// (here within a second; by default Nexus also asks every Keeper each
	// second, and drops every key when none holds the root key), requests
	// fail with the sealed error, each within a second.
	for _, k := range s.keepers {
		k.Kill()
	}
	killed := time.Now()
	var err error
	for err == nil && time.Since(killed) < 3*time.Second {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = secrets.GetSecret(callCtx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "keepers/w0"}))
		cancel()
	}
	t.Logf("with no Keeper, requests failed %v after the last one died: %v", time.Since(killed).Round(time.Millisecond), err)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || !strings.Contains(ce.Message(), "SPIKE is sealed") {
		t.Fatalf("with no Keeper: %v; want Unavailable \"SPIKE is sealed\" within a second", err)
	}

	// Keeper 1 comes back alone and is unsealed; the others then re-seed
	// from it without anyone unsealing them.
	s.keepers[0].Restart()
	s.keepers[0].WaitListening(s.keeperAddrs[0])
	mustSpike(t, s.pilotEnv(t, 0, identity.Pilot(td)), "correct horse battery\n", "operator", "unseal")
	for i := 1; i < 3; i++ {
		s.keepers[i].Restart()
		s.keepers[i].WaitListening(s.keeperAddrs[i])
	}
	for i := 1; i < 3; i++ {
		waitReseeded(t, op, i, time.Now())
	}
	if _, err := secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: "keepers/w0"})); err != nil {
		t.Fatalf("read after the unseal: %v", err)
	}
}

// spike operator seal makes every Keeper forget the root key: requests fail
// sealed, the Keepers do not re-seed each other meanwhile, the audit trail
// names who sealed, and an unseal brings everything back.
func TestOperatorSeal(t *testing.T) {
	t.Parallel()
	s := startCluster(t, pgtest.NewRoles(t, ""), 1, 2)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	mustSpike(t, admin, "", "secret", "put", "sealed/x", "k=v")
	out := mustSpike(t, admin, "", "operator", "seal")
	if !strings.Contains(out, "SPIKE is sealed: every Keeper forgot the root key") {
		t.Errorf("seal printed %q", out)
	}
	// Longer than the re-seed interval (200ms): nobody re-seeded anybody.
	time.Sleep(time.Second)
	r := spike(t, admin, "", "secret", "get", "sealed/x")
	if r.code == 0 || !strings.Contains(r.stderr, "sealed on purpose") {
		t.Errorf("get after seal: exit %d, stderr %q; want the sealed-on-purpose error", r.code, r.stderr)
	}
	r = spike(t, admin, "", "operator", "status")
	if r.code != 2 {
		t.Errorf("status while sealed: exit %d, want 2", r.code)
	}
	status := r.stdout
	if strings.Count(status, "sealed on purpose") < 2 {
		t.Errorf("status does not show both Keepers sealed on purpose:\n%s", status)
	}
	mustSpike(t, admin, "correct horse battery\n", "operator", "unseal")
	if got := mustSpike(t, admin, "", "secret", "get", "sealed/x"); !strings.Contains(got, "v") {
		t.Errorf("get after unseal: %q", got)
	}
	audit := mustSpike(t, admin, "", "audit", "list", "-o", "json")
	if !strings.Contains(audit, "OperatorService/Seal") || !strings.Contains(audit, identity.Pilot(td).String()) {
		t.Errorf("no audit record of the seal by the admin:\n%.2000s", audit)
	}
}
