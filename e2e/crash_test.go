package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
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

// write is one logical put of the storm and how it ended.
type write struct {
	path, value string
	code        connect.Code // 0: OK
	version     int64        // when OK
}

// Writes happen exactly once, whatever fails under them: PostgreSQL is
// crashed (immediate shutdown) again and again and a Nexus replica is
// killed while writers put as fast as they can, half of them with
// check-and-set. Afterwards no value is stored twice, every acknowledged
// write is stored at the version it was told, and every write that failed
// with anything but Unknown was not applied: a write that committed
// without an answer was reported Unknown, never Unavailable (which clients
// retry) nor a check-and-set conflict.
func TestWritesSurviveCrashes(t *testing.T) {
	t.Parallel()
	cl, err := pgtest.StartDurable(filepath.Join(t.TempDir(), "pg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Stop() })
	s := startStackOn(t, cl.NewRoles(t, ""), 2)
	s.initialise(t)

	clients := []nexusv1connect.SecretServiceClient{s.stormClient(t, 0), s.stormClient(t, 1)}
	const writers = 8
	ctx := t.Context()
	for w := range writers {
		path := fmt.Sprintf("storm/w%d", w)
		_, err := clients[0].UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{
			Path: path, MaxVersions: ptr[int32](1000)}))
		if err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu     sync.Mutex
		writes []write
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			path := fmt.Sprintf("storm/w%d", w)
			useCAS := w%2 == 1
			var expected int64 // the version a check-and-set write expects
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c := clients[(w+n)%2]
				req := &nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"v": fmt.Sprintf("%d-%d", w, n)}}
				if useCAS {
					req.Cas = ptr(expected)
				}
				callCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				resp, err := c.PutSecret(callCtx, connect.NewRequest(req))
				cancel()
				wr := write{path: path, value: req.Data["v"]}
				if err != nil {
					wr.code = connect.CodeOf(err)
				} else {
					wr.version = resp.Msg.GetVersion()
					expected = wr.version
				}
				mu.Lock()
				writes = append(writes, wr)
				mu.Unlock()
				if useCAS && err != nil {
					// Look before writing again: learn the current version.
					for {
						md, err := c.GetSecretMetadata(context.Background(), connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: path}))
						if err == nil {
							expected = md.Msg.GetMetadata().GetCurrentVersion()
							break
						}
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
					}
				}
			}
		})
	}

	// The faults, from the test's goroutine: crash PostgreSQL, and once
	// kill a Nexus replica in the middle of the storm.
	const crashes = 5
	for i := range crashes {
		time.Sleep(700 * time.Millisecond)
		if err := cl.CrashRestart(); err != nil {
			t.Fatalf("crash %d: %v", i, err)
		}
		if i == 2 {
			time.Sleep(300 * time.Millisecond)
			s.nexus[0].Kill()
			time.Sleep(300 * time.Millisecond)
			s.nexus[0].Restart()
			s.nexus[0].WaitListening(s.nexusAddrs[0])
		}
	}
	// Calm: the storm must go on succeeding once the faults stop.
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	calm := len(writes)
	mu.Unlock()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	counts := checkExactlyOnce(t, writes, storedValues(ctx, t, clients[1], writers))
	okAfterCalm := 0
	for _, wr := range writes[calm:] {
		if wr.code == 0 {
			okAfterCalm++
		}
	}
	t.Logf("%d writes through %d crashes of PostgreSQL and one of Nexus: %v", len(writes), crashes, counts)
	if okAfterCalm == 0 {
		t.Errorf("no write succeeded after the faults stopped: %v", counts)
	}
}

// stormClient is a client of replica i as the admin, as Pilot builds it:
// idempotency keys, retries, and Unknown for an unanswered write.
func (s *stack) stormClient(t *testing.T, i int) nexusv1connect.SecretServiceClient {
	t.Helper()
	src, err := s.ca.Source(identity.Pilot(td))
	if err != nil {
		t.Fatal(err)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))))
	t.Cleanup(httpClient.CloseIdleConnections)
	return nexusv1connect.NewSecretServiceClient(httpClient, "https://"+s.nexusAddrs[i],
		bearer(s.adminToken), connect.WithInterceptors(rpcclient.Interceptor()))
}

func ptr[T any](v T) *T { return &v }

// storedValues reads every version of the storm's secrets storm/w0 ..
// storm/w<writers-1>: path=value -> the versions that hold it.
func storedValues(ctx context.Context, t *testing.T, client nexusv1connect.SecretServiceClient, writers int) map[string][]int64 {
	t.Helper()
	stored := map[string][]int64{}
	for w := range writers {
		path := fmt.Sprintf("storm/w%d", w)
		md, err := client.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: path}))
		if err != nil {
			t.Fatalf("metadata of %s: %v", path, err)
		}
		for _, v := range md.Msg.GetMetadata().GetVersions() {
			got, err := client.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path, Version: v.GetVersion()}))
			if err != nil {
				t.Fatalf("version %d of %s: %v", v.GetVersion(), path, err)
			}
			key := path + "=" + got.Msg.GetSecret().GetData()["v"]
			stored[key] = append(stored[key], v.GetVersion())
		}
	}
	return stored
}

// checkExactlyOnce checks the storm's writes against what is stored: no
// value stored twice, every acknowledged write stored at the version it
// was told, no write that failed with anything but Unknown applied, and
// nothing stored that no write sent. It returns the writes counted by
// outcome.
func checkExactlyOnce(t *testing.T, writes []write, stored map[string][]int64) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, wr := range writes {
		key := wr.path + "=" + wr.value
		versions := stored[key]
		if len(versions) > 1 {
			t.Errorf("%s stored %d times, at versions %v", key, len(versions), versions)
		}
		switch wr.code {
		case 0:
			counts["ok"]++
			if len(versions) != 1 || versions[0] != wr.version {
				t.Errorf("%s was acknowledged at version %d, stored at %v", key, wr.version, versions)
			}
		case connect.CodeUnknown:
			counts["unknown"]++
			if len(versions) > 0 {
				counts["unknown, applied"]++
			}
		default:
			counts[wr.code.String()]++
			if len(versions) > 0 {
				t.Errorf("%s failed with %s but was applied, at version %v", key, wr.code, versions)
			}
		}
		delete(stored, key)
	}
	for key, versions := range stored {
		t.Errorf("%s stored at %v by no write of the storm", key, versions)
	}
	return counts
}
