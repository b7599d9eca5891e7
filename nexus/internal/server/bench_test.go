package server_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// The request path end to end, in one process: a workload's Connect client
// over real mTLS to the real Nexus app, with its policy check, Keeper
// (in-process, over mTLS), PostgreSQL (a throwaway cluster) and durable
// audit record. These benchmarks show a regression of the whole path
// without `make bench`'s separate processes; their figures include the
// client's own cost (`go test -bench . -benchmem ./nexus/internal/server`).

// benchPaths is how many secrets the benchmarks spread over.
const benchPaths = 100

// benchStack is an initialised stack whose workload spiffe://TD/bench may
// read and write bench/**, holding benchPaths secrets, and that workload's
// client.
func benchStack(b *testing.B) nexusv1connect.SecretServiceClient {
	b.Helper()
	s := newStack(b)
	s.init()
	id := spiffeid.RequireFromPath(td, "/bench")
	s.putPolicy("bench", id.String(), "bench/**", "read", "write")
	c := s.secrets(id)
	for i := range benchPaths {
		s.put(benchPath(i), map[string]string{"value": strings.Repeat("v", 256)})
	}
	return c
}

func benchPath(i int) string { return fmt.Sprintf("bench/s%03d", i%benchPaths) }

func BenchmarkGetSecret(b *testing.B) {
	c := benchStack(b)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 callers on 2 cores, like make bench's c=16
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := c.GetSecret(b.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: benchPath(i)})); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPutSecret(b *testing.B) {
	c := benchStack(b)
	value := map[string]string{"value": strings.Repeat("w", 256)}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := c.PutSecret(b.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: benchPath(i), Data: value})); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
