package e2e_test

import (
	"context"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// storm is a load of reads and writes that records every failure: each
// worker writes a secret of its own and reads it back, and reads the
// fixed secrets, which must keep their values.
type storm struct {
	mu       sync.Mutex
	ok       int
	failures []string
	stop     chan struct{}
	wg       sync.WaitGroup
}

// startStorm starts workers workers, spread over the clients (no-retry
// clients, so that every failure reaches the test), writing under prefix.
func startStorm(ctx context.Context, clients []nexusv1connect.SecretServiceClient, workers int, prefix string, fixed map[string]string) *storm {
	s := &storm{stop: make(chan struct{})}
	for w := range workers {
		secrets := clients[w%len(clients)]
		s.wg.Go(func() {
			path := fmt.Sprintf("%s%d", prefix, w)
			for n := 0; ; n++ {
				select {
				case <-s.stop:
					return
				default:
				}
				err := writeRead(ctx, secrets, path, fmt.Sprint(n))
				for p, want := range fixed {
					if err != nil {
						break
					}
					err = readBack(ctx, secrets, p, want)
				}
				s.mu.Lock()
				if err != nil {
					s.failures = append(s.failures, err.Error())
				} else {
					s.ok++
				}
				s.mu.Unlock()
			}
		})
	}
	return s
}

// writeRead writes value at path under the key "n" and reads it back.
func writeRead(ctx context.Context, secrets nexusv1connect.SecretServiceClient, path, value string) error {
	_, err := secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: map[string]string{"n": value}}))
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return readBack(ctx, secrets, path, value)
}

// readBack reads path and checks that its key "n" is want.
func readBack(ctx context.Context, secrets nexusv1connect.SecretServiceClient, path, want string) error {
	got, err := secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if v := got.Msg.GetSecret().GetData()["n"]; v != want {
		return fmt.Errorf("read %q from %s, want %q", v, path, want)
	}
	return nil
}

// finish stops the storm and returns how many rounds succeeded and the
// failures.
func (s *storm) finish() (ok int, failures []string) {
	close(s.stop)
	s.wg.Wait()
	return s.ok, s.failures
}
