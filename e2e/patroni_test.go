package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

// stamped is a write of the storm and when its answer came.
type stamped struct {
	write
	at time.Time
}

// Nexus rides through a failover of PostgreSQL under Patroni: a primary
// and a synchronous standby behind etcd, Nexus connected with a multi-host
// URL (target_session_attrs=read-write). The primary's postmaster is
// killed with SIGKILL while writers put as fast as they can, each put
// with an idempotency key and retries as Pilot sends it. Patroni promotes
// the standby; the same Nexus process (never restarted) serves again; no
// acknowledged write is lost and none is stored twice; a write that
// failed with anything but Unknown was not applied; the audit trail
// verifies. The time Nexus took to serve again is logged, not asserted.
func TestPatroniFailover(t *testing.T) {
	t.Parallel()
	ha := pgtest.StartHA(t, 2)
	s := startStackOn(t, ha.NewRoles(t, ""), 1)
	s.initialise(t)

	client := s.stormClient(t, 0)
	const writers = 6
	ctx := t.Context()
	for w := range writers {
		_, err := client.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{
			Path: fmt.Sprintf("storm/w%d", w), MaxVersions: ptr[int32](1000)}))
		if err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu     sync.Mutex
		writes []stamped
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	endStorm := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(endStorm) // when the test fails halfway
	for w := range writers {
		wg.Go(func() {
			path := fmt.Sprintf("storm/w%d", w)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req := &nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"v": fmt.Sprintf("%d-%d", w, n)}}
				callCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				resp, err := client.PutSecret(callCtx, connect.NewRequest(req))
				cancel()
				wr := stamped{write: write{path: path, value: req.Data["v"]}, at: time.Now()}
				if err != nil {
					wr.code = connect.CodeOf(err)
					time.Sleep(50 * time.Millisecond) // no busy loop while the database is away
				} else {
					wr.version = resp.Msg.GetVersion()
				}
				mu.Lock()
				writes = append(writes, wr)
				mu.Unlock()
			}
		})
	}
	acked := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, wr := range writes {
			if wr.code == 0 && wr.at.After(after) {
				n++
			}
		}
		return n
	}

	// Let the storm run, then kill the primary's postmaster.
	waitWithin(t, 30*time.Second, "the storm to get going", func() bool { return acked(time.Time{}) >= 100 })
	// Who leads now (a loaded machine may have failed over already).
	primary, standby := -1, -1
	waitWithin(t, 30*time.Second, "a primary and a synchronous standby", func() bool {
		primary, standby = ha.Primary(), ha.SyncStandby()
		return primary >= 0 && standby >= 0
	})
	killed := time.Now()
	pid := ha.KillPostmaster(primary)
	waitWithin(t, 60*time.Second, "Patroni to promote the synchronous standby", func() bool {
		return ha.Primary() == standby
	})
	promotedAt := time.Now()
	promoted := promotedAt.Sub(killed)
	// Serving again: a put acknowledged after Patroni reported the new
	// primary (the old one's backends may finish a commit or two after
	// the kill; nothing commits there once the standby is promoted).
	var recovered time.Duration
	waitWithin(t, 60*time.Second, "Nexus to serve writes again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, wr := range writes {
			if wr.code == 0 && wr.at.After(promotedAt) {
				if recovered == 0 || wr.at.Sub(killed) < recovered {
					recovered = wr.at.Sub(killed)
				}
			}
		}
		return recovered > 0
	})
	calm := time.Now()
	waitWithin(t, 30*time.Second, "the storm to go on after the failover", func() bool { return acked(calm) >= 100 })
	endStorm()

	plain := make([]write, len(writes))
	for i, wr := range writes {
		plain[i] = wr.write
	}
	counts := checkExactlyOnce(t, plain, storedValues(ctx, t, client, writers))

	// The longest time without an acknowledged write, as clients saw the
	// failover.
	var acks []time.Time
	for _, wr := range writes {
		if wr.code == 0 {
			acks = append(acks, wr.at)
		}
	}
	slices.SortFunc(acks, time.Time.Compare)
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		gap = max(gap, acks[i].Sub(acks[i-1]))
	}

	var report struct {
		OK bool `json:"ok"`
	}
	out := mustSpike(t, s.pilotEnv(t, 0, identity.Pilot(td)), "", "audit", "verify", "-o", "json")
	if err := json.Unmarshal([]byte(out), &report); err != nil || !report.OK {
		t.Errorf("audit verify printed %s (%v)", out, err)
	}
	t.Logf("killed postmaster %d of member %d; Patroni promoted member %d after %s; "+
		"Nexus acknowledged a write on the new primary %s after the kill; longest time without an acknowledged write %s; %d writes: %v",
		pid, primary, standby, promoted.Round(time.Millisecond), recovered.Round(time.Millisecond),
		gap.Round(time.Millisecond), len(writes), counts)
}
