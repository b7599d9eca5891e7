package main

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cellAt returns a clean cell of ops requests per second over 5s.
func cellAt(opsPerSecond int, p99 time.Duration) summary {
	return summary{Ops: opsPerSecond * 5, Elapsed: 5 * time.Second,
		P50: p99 / 4, P90: p99 / 2, P99: p99}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	// use is a cell's usage whose server CPU is perOp at ops requests a
	// second (spike-bench uses 0.5 cores).
	use := func(perOp time.Duration, ops int) usage {
		return usage{Machine: perOp.Seconds()*float64(ops) + 0.5, Bench: 0.5}
	}
	// rows has c=1, 16 and 64 rows of the same cells.
	rows := func(getSPIKE, getFloor, getRaw, putSPIKE, putRaw summary, getCPU, putCPU time.Duration) []row {
		var rs []row
		for _, c := range []int{1, 16, 64} {
			rs = append(rs,
				row{Op: "get", Ref: "SELECT", Concurrency: c, SPIKE: getSPIKE, Floor: getFloor, Raw: getRaw,
					SPIKEUse: use(getCPU, int(getSPIKE.throughput()))},
				row{Op: "put", Ref: "INSERT", Concurrency: c, SPIKE: putSPIKE, Raw: putRaw,
					SPIKEUse: use(putCPU, int(putSPIKE.throughput()))})
		}
		return rs
	}
	// at is a cell of ops requests a second with the given p50 and p99.
	at := func(ops int, p50, p99 time.Duration) summary {
		s := cellAt(ops, p99)
		s.P50 = p50
		return s
	}
	failed := cellAt(100, time.Millisecond)
	failed.Errors = 2
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		r    report
		want []targetResult
	}{
		{
			name: "all pass",
			r: report{
				Rows: rows(at(600, 800*time.Microsecond, 5*ms), cellAt(1000, ms), cellAt(3000, ms),
					at(300, 1200*time.Microsecond, 9*ms), cellAt(1000, ms), 130*time.Microsecond, 400*time.Microsecond),
				NexusRSS: memory{Bytes: 100 * mib, Measured: true},
			},
			want: []targetResult{
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/2", "60.0%", pass},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/2", "20.0%", pass},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/2", "60.0%", pass},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/2", "20.0%", pass},
				{"put ≥ 30% of raw INSERT at c=16 over HTTP/2", "30.0%", pass},
				{"put ≥ 30% of raw INSERT at c=64 over HTTP/2", "30.0%", pass},
				{"server CPU per get ≤ 130 µs at c=16", "130 µs", pass},
				{"server CPU per put ≤ 400 µs at c=16", "400 µs", pass},
				{"p99 get ≤ 5.00 ms at c=16", "5.00 ms", pass},
				{"p50 get ≤ 0.80 ms at c=1", "0.80 ms", pass},
				{"p50 put ≤ 1.20 ms at c=1", "1.20 ms", pass},
				{"Nexus peak RSS ≤ 100 MiB", "100.0 MiB", pass},
			},
		},
		{
			name: "all miss",
			r: report{
				Rows: rows(at(599, 801*time.Microsecond, 5*ms+time.Microsecond), cellAt(1000, ms), cellAt(3000, ms),
					at(299, 1201*time.Microsecond, 9*ms), cellAt(1000, ms), 131*time.Microsecond, 401*time.Microsecond),
				NexusRSS: memory{Bytes: 101 * mib, Measured: true},
			},
			want: []targetResult{
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/2", "59.9%", miss},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/2", "20.0%", miss},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/2", "59.9%", miss},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/2", "20.0%", miss},
				{"put ≥ 30% of raw INSERT at c=16 over HTTP/2", "29.9%", miss},
				{"put ≥ 30% of raw INSERT at c=64 over HTTP/2", "29.9%", miss},
				{"server CPU per get ≤ 130 µs at c=16", "131 µs", miss},
				{"server CPU per put ≤ 400 µs at c=16", "401 µs", miss},
				{"p99 get ≤ 5.00 ms at c=16", "5.00 ms", miss},
				{"p50 get ≤ 0.80 ms at c=1", "0.80 ms", miss},
				{"p50 put ≤ 1.20 ms at c=1", "1.20 ms", miss},
				{"Nexus peak RSS ≤ 100 MiB", "101.0 MiB", miss},
			},
		},
		{
			name: "failed cells and missing measurements are unknown, not missed",
			r: report{
				Rows:     rows(failed, summary{}, cellAt(1000, ms), cellAt(300, ms), failed, 0, 0),
				NexusRSS: memory{Why: "connection refused"},
			},
			want: []targetResult{
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/2", "SPIKE n/a: 2 errors", unknown},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/2", "SPIKE n/a: 2 errors", unknown},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/2", "SPIKE n/a: 2 errors", unknown},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/2", "SPIKE n/a: 2 errors", unknown},
				{"put ≥ 30% of raw INSERT at c=16 over HTTP/2", "raw n/a: 2 errors", unknown},
				{"put ≥ 30% of raw INSERT at c=64 over HTTP/2", "raw n/a: 2 errors", unknown},
				{"server CPU per get ≤ 130 µs at c=16", "not measured", unknown},
				{"server CPU per put ≤ 400 µs at c=16", "not measured", unknown},
				{"p99 get ≤ 5.00 ms at c=16", "n/a: 2 errors", unknown},
				{"p50 get ≤ 0.80 ms at c=1", "n/a: 2 errors", unknown},
				{"p50 put ≤ 1.20 ms at c=1", "0.25 ms", pass},
				{"Nexus peak RSS ≤ 100 MiB", "not measured", unknown},
			},
		},
		{
			name: "gets over HTTP/1.1 have targets of their own",
			r: report{
				Rows: []row{
					{Op: "get", Ref: "SELECT", Concurrency: 16, Proto: protoH2, SPIKE: cellAt(600, ms), Floor: cellAt(1000, ms), Raw: cellAt(3000, ms)},
					{Op: "get", Ref: "SELECT", Concurrency: 16, Proto: protoH1, SPIKE: cellAt(500, ms), Floor: cellAt(1000, ms), Raw: cellAt(3000, ms)},
				},
				NexusRSS: memory{Bytes: mib, Measured: true},
			},
			want: []targetResult{
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/2", "60.0%", pass},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/2", "20.0%", pass},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/1.1", "50.0%", miss},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/1.1", "16.7%", miss},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/1.1", "not run (no c=64)", unknown},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/1.1", "not run (no c=64)", unknown},
				{"put ≥ 30% of raw INSERT at c=16 over HTTP/2", "not run (no c=16)", unknown},
				{"put ≥ 30% of raw INSERT at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"server CPU per get ≤ 130 µs at c=16", "not measured", unknown},
				{"server CPU per put ≤ 400 µs at c=16", "not run (no c=16)", unknown},
				{"p99 get ≤ 5.00 ms at c=16", "1.00 ms", pass},
				{"p50 get ≤ 0.80 ms at c=1", "not run (no c=1)", unknown},
				{"p50 put ≤ 1.20 ms at c=1", "not run (no c=1)", unknown},
				{"Nexus peak RSS ≤ 100 MiB", "1.0 MiB", pass},
			},
		},
		{
			name: "floor and concurrencies not run",
			r: report{
				Rows:     []row{{Op: "get", Ref: "SELECT", Concurrency: 16, SPIKE: cellAt(1, ms), Raw: cellAt(1, ms)}},
				NexusRSS: memory{Bytes: mib, Measured: true},
			},
			want: []targetResult{
				{"get ≥ 60% of the protocol floor at c=16 over HTTP/2", "floor not run", unknown},
				{"get ≥ 20% of raw SELECT at c=16 over HTTP/2", "100.0%", pass},
				{"get ≥ 60% of the protocol floor at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"get ≥ 20% of raw SELECT at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"put ≥ 30% of raw INSERT at c=16 over HTTP/2", "not run (no c=16)", unknown},
				{"put ≥ 30% of raw INSERT at c=64 over HTTP/2", "not run (no c=64)", unknown},
				{"server CPU per get ≤ 130 µs at c=16", "not measured", unknown},
				{"server CPU per put ≤ 400 µs at c=16", "not run (no c=16)", unknown},
				{"p99 get ≤ 5.00 ms at c=16", "1.00 ms", pass},
				{"p50 get ≤ 0.80 ms at c=1", "not run (no c=1)", unknown},
				{"p50 put ≤ 1.20 ms at c=1", "not run (no c=1)", unknown},
				{"Nexus peak RSS ≤ 100 MiB", "1.0 MiB", pass},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, tc.r.targets()); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	failedPut := cellAt(90, 40*time.Millisecond)
	failedPut.Errors = 3
	failedPut.FirstError = "put bench/p000007: unavailable: database | down"
	r := report{
		Date:      time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		CPUs:      2,
		CPUModel:  "AMD EPYC",
		GoVersion: "go1.26.0",
		Postgres:  "15.18",
		Caller:    "admin spiffe://spike.local/spike/pilot with an admin token",
		ValueSize: 256,
		Paths:     100,
		Duration:  5 * time.Second,
		Rows: []row{
			{
				Op: "get", Ref: "SELECT", Concurrency: 16,
				SPIKE:    summary{Ops: 20000, Elapsed: 5 * time.Second, P50: 1500 * time.Microsecond, P90: 3 * time.Millisecond, P99: 8250 * time.Microsecond},
				Raw:      summary{Ops: 50000, Elapsed: 5 * time.Second, P50: 100 * time.Microsecond, P90: 200 * time.Microsecond, P99: time.Millisecond},
				SPIKEUse: usage{Machine: 1.9, Nexus: 0.8, Keeper: 0.02, Floor: nan, Bench: 0.4, AuditBatch: 2.5, AuditWait: 0.0012, PoolWait: 0},
				RawUse:   usage{Machine: 1.95, Nexus: 0, Keeper: 0, Floor: nan, Bench: 0.7, AuditBatch: nan, AuditWait: nan, PoolWait: 0},
				Floor:    summary{Ops: 40000, Elapsed: 5 * time.Second, P50: 500 * time.Microsecond, P90: time.Millisecond, P99: 2 * time.Millisecond},
				FloorUse: usage{Machine: 1.8, Nexus: nan, Keeper: nan, Floor: 0.9, Bench: 0.8, AuditBatch: nan, AuditWait: nan, PoolWait: nan},
			},
			{
				Op: "get", Ref: "SELECT", Concurrency: 16, Proto: protoH1,
				SPIKE:    summary{Ops: 25000, Elapsed: 5 * time.Second, P50: 1200 * time.Microsecond, P90: 2 * time.Millisecond, P99: 6 * time.Millisecond},
				Raw:      summary{Ops: 50000, Elapsed: 5 * time.Second, P50: 100 * time.Microsecond, P90: 200 * time.Microsecond, P99: time.Millisecond},
				SPIKEUse: usage{Machine: 1.9, Nexus: 0.8, Keeper: 0.02, Floor: nan, Bench: 0.5, AuditBatch: 2.5, AuditWait: 0.0012, PoolWait: 0},
				RawUse:   usage{Machine: 1.95, Nexus: 0, Keeper: 0, Floor: nan, Bench: 0.7, AuditBatch: nan, AuditWait: nan, PoolWait: 0},
				Floor:    summary{Ops: 50000, Elapsed: 5 * time.Second, P50: 400 * time.Microsecond, P90: time.Millisecond, P99: 2 * time.Millisecond},
				FloorUse: usage{Machine: 1.8, Nexus: nan, Keeper: nan, Floor: 0.8, Bench: 0.9, AuditBatch: nan, AuditWait: nan, PoolWait: nan},
			},
			{
				Op: "put", Ref: "INSERT", Concurrency: 16,
				SPIKE:    failedPut,
				Raw:      cellAt(1000, 2*time.Millisecond),
				SPIKEUse: usage{Machine: nan, Nexus: nan, Keeper: nan, Floor: nan, Bench: nan, AuditBatch: nan, AuditWait: nan, PoolWait: nan},
				RawUse:   usage{Machine: 1.5, Nexus: nan, Keeper: nan, Floor: nan, Bench: 0.5, AuditBatch: nan, AuditWait: nan, PoolWait: nan},
			},
		},
		NexusRSS:  memory{Bytes: 40 << 20, Measured: true},
		KeeperRSS: memory{Why: "no sample"},
	}
	const want = "" +
		"# SPIKE benchmarks\n" +
		"\n" +
		"Written by `make bench` (`deploy/local/bench.sh` runs `e2e/cmd/spike-bench` against a fresh local stack). Do not edit: run it again.\n" +
		"\n" +
		"## Setup\n" +
		"\n" +
		"| setting | value |\n" +
		"|---|---|\n" +
		"| date | 2026-01-02 15:04 UTC |\n" +
		"| machine | 2 CPUs (AMD EPYC) |\n" +
		"| Go | go1.26.0 |\n" +
		"| PostgreSQL | 15.18 |\n" +
		"| caller | admin spiffe://spike.local/spike/pilot with an admin token; audit on |\n" +
		"| value size | 256 bytes |\n" +
		"| paths | 100 |\n" +
		"| duration | 5s per cell |\n" +
		"\n" +
		"## Results\n" +
		"\n" +
		"SPIKE: `GetSecret` of a random path and `PutSecret` of a new version of one, through the Connect client that workloads use (HTTP/2 over SPIFFE mTLS). Raw: pgx on the same database, one connection per caller: a primary-key `SELECT` of a bytea of the value size, and a single-row `INSERT` of one, each committed on its own (scratch table `bench_raw`, dropped afterwards).\n" +
		"\n" +
		"Floor: the same client calling `spike-nexus floor`, a Connect server with Nexus's TLS, SVID check, HTTP and Connect settings whose GetSecret and PutSecret do no work (no policy, database, Keeper or audit): the most any Connect-over-mTLS server could do here, so SPIKE/floor is what SPIKE's own work leaves of it. Columns about the floor are empty when it was not measured.\n" +
		"\n" +
		"c is the number of concurrent callers. Throughput counts the successful requests over the cell's wall time; latencies are per request (nearest rank). A cell in which any request failed shows no figures.\n" +
		"\n" +
		"| operation | c | HTTP | SPIKE ops/s | p50 | p90 | p99 | floor ops/s | floor p50 | SPIKE/floor | raw ops/s | raw p50 | raw p90 | raw p99 | SPIKE/raw |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" +
		"| get vs SELECT | 16 | HTTP/2 | 4000 | 1.50 ms | 3.00 ms | 8.25 ms | 8000 | 0.50 ms | 50.0% | 10000 | 0.10 ms | 0.20 ms | 1.00 ms | 40.0% |\n" +
		"| get vs SELECT | 16 | HTTP/1.1 | 5000 | 1.20 ms | 2.00 ms | 6.00 ms | 10000 | 0.40 ms | 50.0% | 10000 | 0.10 ms | 0.20 ms | 1.00 ms | 50.0% |\n" +
		"| put vs INSERT | 16 | HTTP/2 | n/a: 3 errors | n/a | n/a | n/a | – | – | – | 1000 | 0.50 ms | 1.00 ms | 2.00 ms | n/a |\n" +
		"\n" +
		"## Targets\n" +
		"\n" +
		"From issue 16, for a 2-core machine with audit on. Server CPU is the machine's busy time less spike-bench's: Nexus, Keeper, PostgreSQL and the kernel (and anything else running).\n" +
		"\n" +
		"| target | measured | result |\n" +
		"|---|---|---|\n" +
		"| get ≥ 60% of the protocol floor at c=16 over HTTP/2 | 50.0% | miss |\n" +
		"| get ≥ 20% of raw SELECT at c=16 over HTTP/2 | 40.0% | pass |\n" +
		"| get ≥ 60% of the protocol floor at c=64 over HTTP/2 | not run (no c=64) | n/a |\n" +
		"| get ≥ 20% of raw SELECT at c=64 over HTTP/2 | not run (no c=64) | n/a |\n" +
		"| get ≥ 60% of the protocol floor at c=16 over HTTP/1.1 | 50.0% | miss |\n" +
		"| get ≥ 20% of raw SELECT at c=16 over HTTP/1.1 | 50.0% | pass |\n" +
		"| get ≥ 60% of the protocol floor at c=64 over HTTP/1.1 | not run (no c=64) | n/a |\n" +
		"| get ≥ 20% of raw SELECT at c=64 over HTTP/1.1 | not run (no c=64) | n/a |\n" +
		"| put ≥ 30% of raw INSERT at c=16 over HTTP/2 | SPIKE n/a: 3 errors | n/a |\n" +
		"| put ≥ 30% of raw INSERT at c=64 over HTTP/2 | not run (no c=64) | n/a |\n" +
		"| server CPU per get ≤ 130 µs at c=16 | 375 µs | miss |\n" +
		"| server CPU per put ≤ 400 µs at c=16 | not measured | n/a |\n" +
		"| p99 get ≤ 5.00 ms at c=16 | 8.25 ms | miss |\n" +
		"| p50 get ≤ 0.80 ms at c=1 | not run (no c=1) | n/a |\n" +
		"| p50 put ≤ 1.20 ms at c=1 | not run (no c=1) | n/a |\n" +
		"| Nexus peak RSS ≤ 100 MiB | 40.0 MiB | pass |\n" +
		"\n" +
		"3 of 16 targets pass.\n" +
		"\n" +
		"## Memory\n" +
		"\n" +
		"Peak of `process_resident_memory_bytes`, sampled every 200 ms during the run.\n" +
		"\n" +
		"| program | peak RSS |\n" +
		"|---|---|\n" +
		"| Nexus | 40.0 MiB |\n" +
		"| Keeper | not measured: no sample |\n" +
		"\n" +
		"## Where the CPU went\n" +
		"\n" +
		"Cores used during each cell (2 cores in all): the machine's busy time from `/proc/stat`, Nexus's, Keeper's and the floor's `process_cpu_seconds_total`, spike-bench's own; \"rest\" is the busy time left, mostly PostgreSQL and the kernel. From Nexus's metrics: records per audit batch, mean audit wait, and mean wait for a database connection per acquire (Nexus's pool; the raw reference has one connection per caller).\n" +
		"\n" +
		"| cell | busy | Nexus | Keeper | floor | spike-bench | rest | audit records/batch | audit wait ms | DB pool wait ms |\n" +
		"|---|---|---|---|---|---|---|---|---|---|\n" +
		"| SPIKE get c=16 | 1.90 | 0.80 | 0.02 | – | 0.40 | 0.68 | 2.50 | 1.20 | 0.00 |\n" +
		"| floor get c=16 | 1.80 | – | – | 0.90 | 0.80 | 0.10 | – | – | – |\n" +
		"| raw SELECT c=16 | 1.95 | 0.00 | 0.00 | – | 0.70 | 1.25 | – | – | 0.00 |\n" +
		"| SPIKE get h1 c=16 | 1.90 | 0.80 | 0.02 | – | 0.50 | 0.58 | 2.50 | 1.20 | 0.00 |\n" +
		"| floor get h1 c=16 | 1.80 | – | – | 0.80 | 0.90 | 0.10 | – | – | – |\n" +
		"| SPIKE put c=16 | – | – | – | – | – | – | – | – | – |\n" +
		"| raw INSERT c=16 | 1.50 | – | – | – | 0.50 | 1.00 | – | – | – |\n" +
		"\n" +
		"## CPU per operation\n" +
		"\n" +
		"The same figures divided by the operations done: microseconds of CPU per request (cores × wall time / operations). The machine's CPU is shared by everything, so spike-bench's own cost per request bounds what any server could reach: with Nexus, Keeper and PostgreSQL free, the cores could do at most cores ÷ (spike-bench µs per request) requests a second. \"ceiling\" is that bound over the raw throughput of the same row: no server behind this client could show a higher SPIKE/raw on this machine. \"server\" is everything but spike-bench: what serving one request cost the machine.\n" +
		"\n" +
		"| cell | total µs/op | server | Nexus | Keeper | floor | spike-bench | rest | ceiling |\n" +
		"|---|---|---|---|---|---|---|---|---|\n" +
		"| SPIKE get c=16 | 475 | 375 | 200 | 5 | n/a | 100 | 170 | 200.0% |\n" +
		"| floor get c=16 | 225 | 125 | n/a | n/a | 112 | 100 | 12 | – |\n" +
		"| raw SELECT c=16 | 195 | 125 | 0 | 0 | n/a | 70 | 125 | – |\n" +
		"| SPIKE get h1 c=16 | 380 | 280 | 160 | 4 | n/a | 100 | 116 | 200.0% |\n" +
		"| floor get h1 c=16 | 180 | 90 | n/a | n/a | 80 | 90 | 10 | – |\n" +
		"| SPIKE put c=16 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n" +
		"| raw INSERT c=16 | 1500 | 1000 | n/a | n/a | n/a | 500 | 1000 | – |\n" +
		"\n" +
		"## Errors\n" +
		"\n" +
		"| cell | errors | first error |\n" +
		"|---|---|---|\n" +
		"| SPIKE put c=16 | 3 | put bench/p000007: unavailable: database \\| down |\n"
	if diff := cmp.Diff(want, r.markdown()); diff != "" {
		t.Errorf("markdown (-want +got):\n%s", diff)
	}
}
