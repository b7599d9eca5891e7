package access

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spike-dev/spike/nexus/internal/audit/audittest"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/shared/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// benchPolicies returns a Policies on a fresh, migrated PostgreSQL
// database holding n policies listed in a policy manifest, loaded.
//
// The n rows are written in one COPY, sealed as an older SPIKE sealed them
// (without the manifest flag); the first change through the API, a real
// Put, then adopts them into the manifest, as it does on upgrade. Putting
// them one by one would cost what the benchmark measures, n times over.
// The keys are one AES-256-GCM data key held in memory: what envelope.Keys
// does once its data key is cached (Keeper is not involved then).
func benchPolicies(b *testing.B, n int) *Policies {
	b.Helper()
	dsn := pgtest.NewDatabase(b)
	store, err := postgres.Open(b.Context(), dsn, postgres.Options{MaxConns: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	if _, err := store.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	keys := newFakeKeys(b)
	rows := make([][]any, n)
	for i := range rows {
		name := benchName(i)
		rows[i] = []any{name, keys.sealPolicy(b, storedPolicy(name))}
	}
	conn, err := pgx.Connect(b.Context(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(b.Context())
	if _, err := conn.CopyFrom(b.Context(), pgx.Identifier{"policies"}, []string{"name", "sealed"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	p := newPolicies(store, keys, slog.New(slog.DiscardHandler), time.Now)
	if _, err := p.Put(b.Context(), audittest.Record(b, nil), storedPolicy(benchName(0))); err != nil {
		b.Fatal(err)
	}
	if err := p.Reload(b.Context()); err != nil {
		b.Fatal(err)
	}
	if snap, err := p.Read(b.Context()); err != nil || len(snap.Valid) != n || snap.Legacy {
		b.Fatalf("setup: %d valid policies (legacy %t), want %d under a manifest: %v", len(snap.Valid), snap.Legacy, n, err)
	}
	return p
}

func benchName(i int) string { return fmt.Sprintf("bench-%05d", i) }

// BenchmarkPutPolicy is what the PutPolicy handler does with n policies
// stored: Put (seal, store, rewrite the manifest) then Reload. Each
// iteration updates one of the n policies, so n stays the same.
func BenchmarkPutPolicy(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			p := benchPolicies(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sp := storedPolicy(benchName(i % n))
				sp.PathPattern = fmt.Sprintf("apps/v%d/**", i)
				if _, err := p.Put(b.Context(), audittest.Record(b, nil), sp); err != nil {
					b.Fatal(err)
				}
				if err := p.Reload(b.Context()); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
