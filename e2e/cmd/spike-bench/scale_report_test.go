package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// scaleCell is a clean cell of ops requests a second over 5s with the
// given p50, and its usage: server CPU perOp a request (spike-bench uses
// 0.5 cores, Nexus a third of the server's).
func scaleCell(op string, ops int, p50, perOp time.Duration) scaleRow {
	s := cellAt(ops, 4*p50)
	s.P50 = p50
	server := perOp.Seconds() * float64(ops)
	return scaleRow{Op: op, Sum: s, Use: usage{Machine: server + 0.5, Bench: 0.5, Nexus: server / 3, Keeper: 0}}
}

func testScaleReport() scaleReport {
	ms := time.Millisecond
	us := time.Microsecond
	failed := scaleCell(opList, 10, 10*ms, 900*us)
	failed.Sum.Errors = 2
	failed.Sum.FirstError = "list bench/scale/d00001: 99 entries, want 100"
	return scaleReport{
		Date: time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), CPUs: 2, CPUModel: "AMD EPYC", GoVersion: "go1.26.0",
		Postgres: "15.18", Caller: "workload spiffe://spike.local/bench", ValueSize: 256, Duration: 5 * time.Second,
		Concurrency: 16, Writers: 64,
		Stages: []scaleStage{
			{
				Secrets: 10_000, Policies: 1,
				Population: population{What: "secrets", Added: 10_000, Requests: 10_900, Elapsed: 20 * time.Second,
					Use: usage{Machine: 1.9, Bench: 0.4, Nexus: 0.6}},
				Rows: []scaleRow{
					scaleCell(opGet, 2000, ms, 400*us),
					scaleCell(opList, 500, 4*ms, 1000*us),
				},
				NexusRSS: memory{Bytes: 40 << 20, Measured: true}, NexusPeak: memory{Bytes: 50 << 20, Measured: true},
				DBSize: 30 << 20,
			},
			{
				Secrets: 1_000_000, Policies: 1,
				Population: population{What: "secrets", Added: 990_000, Requests: 1_079_100, Elapsed: 2000 * time.Second},
				Rows: []scaleRow{
					scaleCell(opGet, 1900, 1100*us, 420*us), // within the tolerance
					scaleCell(opList, 100, 20*ms, 5000*us),  // slower and costlier
				},
				NexusRSS: memory{Bytes: 60 << 20, Measured: true}, NexusPeak: memory{Bytes: 120 << 20, Measured: true},
				DBSize: -1,
			},
			{
				Secrets: 1_000_000, Policies: 1000,
				Population: population{What: "policies", Added: 999, Requests: 999, Elapsed: 10 * time.Second},
				Rows: []scaleRow{
					scaleCell(opGet, 1500, 1200*us, 600*us), // vs the 1M row: CPU ×1.43
					failed,
				},
				NexusRSS: memory{Why: "no sample"}, NexusPeak: memory{Bytes: 70 << 20, Measured: true},
				DBSize: 3 << 30,
			},
		},
	}
}

func TestScaleResultTable(t *testing.T) {
	t.Parallel()
	want := [][]string{
		{"secrets", "policies", "operation", "ops/s", "p50", "p99", "Nexus µs/op", "rest µs/op", "server µs/op", "Flat?"},
		{"10,000", "1", "get", "2000", "1.00 ms", "4.00 ms", "133", "267", "400", "baseline"},
		{"10,000", "1", "list (100 secrets)", "500", "4.00 ms", "16.00 ms", "333", "667", "1000", "baseline"},
		{"1,000,000", "1", "get", "1900", "1.10 ms", "4.40 ms", "140", "280", "420", "flat (p50 ×1.10, CPU ×1.05)"},
		{"1,000,000", "1", "list (100 secrets)", "100", "20.00 ms", "80.00 ms", "1667", "3333", "5000", "no: slower, costlier (p50 ×5.00, CPU ×5.00)"},
		{"1,000,000", "1,000", "get", "1500", "1.20 ms", "4.80 ms", "200", "400", "600", "no: costlier (p50 ×1.09, CPU ×1.43)"},
		{"1,000,000", "1,000", "list (100 secrets)", "n/a: 2 errors", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"},
	}
	if diff := cmp.Diff(want, testScaleReport().resultTable()); diff != "" {
		t.Errorf("result table (-want +got):\n%s", diff)
	}
}

func TestScaleMemoryAndPopulation(t *testing.T) {
	t.Parallel()
	r := testScaleReport()
	wantMem := [][]string{
		{"secrets", "policies", "Nexus RSS", "Nexus peak RSS", "database size"},
		{"10,000", "1", "40.0 MiB", "50.0 MiB", "30.0 MiB"},
		{"1,000,000", "1", "60.0 MiB", "120.0 MiB", "not measured"},
		{"1,000,000", "1,000", "not measured: no sample", "70.0 MiB", "3072.0 MiB"},
	}
	if diff := cmp.Diff(wantMem, r.memoryTable()); diff != "" {
		t.Errorf("memory table (-want +got):\n%s", diff)
	}
	wantPop := [][]string{
		{"grown to", "added", "calls", "time", "added/s", "calls/s", "s per 1k added", "Nexus µs/call", "server µs/call"},
		{"10,000 secrets", "10,000", "10,900", "20s", "500", "545", "2.0", "1101", "2752"},
		{"1,000,000 secrets", "990,000", "1,079,100", "33m20s", "495", "540", "2.0", "0", "0"},
		{"1,000 policies", "999", "999", "10s", "100", "100", "10.0", "0", "0"},
	}
	if diff := cmp.Diff(wantPop, r.populationTable()); diff != "" {
		t.Errorf("population table (-want +got):\n%s", diff)
	}
}

func TestScaleRSSTarget(t *testing.T) {
	t.Parallel()
	r := testScaleReport()
	if got := r.rssTarget(); !strings.HasSuffix(got, "peak 120.0 MiB at 1,000,000 secrets: miss.") {
		t.Errorf("over 100 MiB: %q", got)
	}
	r.Stages[1].NexusPeak.Bytes = 90 << 20
	if got := r.rssTarget(); !strings.HasSuffix(got, "peak 90.0 MiB at 1,000,000 secrets: pass.") {
		t.Errorf("under 100 MiB: %q", got)
	}
	r.Stages[1].NexusPeak = memory{Why: "no sample"}
	if got := r.rssTarget(); !strings.HasSuffix(got, "not measured (not measured: no sample).") {
		t.Errorf("unmeasured: %q", got)
	}
	r.Stages = r.Stages[:1]
	if got := r.rssTarget(); !strings.HasSuffix(got, "not run (no size of 1,000,000 secrets or more).") {
		t.Errorf("smaller sizes only: %q", got)
	}
}

func TestScaleMarkdown(t *testing.T) {
	t.Parallel()
	r := testScaleReport()
	md := r.markdown()
	for _, want := range []string{
		"# SPIKE at scale\n",
		"## Setup\n",
		"| secrets | 10,000, 1,000,000 (1 in 100 with 10 versions) |\n",
		"| policies | 1,000 (at the most secrets) |\n",
		"## Results\n",
		"| 1,000,000 | 1 | list (100 secrets) | 100 | 20.00 ms | 80.00 ms | 1667 | 3333 | 5000 | no: slower, costlier (p50 ×5.00, CPU ×5.00) |\n",
		"## Memory and size\n",
		"Target (issue 16): Nexus RSS ≤ 100 MiB at 1,000,000 secrets: peak 120.0 MiB at 1,000,000 secrets: miss.\n",
		"## Writing the data\n",
		"## Errors\n",
		"| list (100 secrets) at 1,000,000 secrets, 1,000 policies | 2 | list bench/scale/d00001: 99 entries, want 100 |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if r.failedRequests() != 2 {
		t.Errorf("failedRequests = %d, want 2", r.failedRequests())
	}
	if txt := r.text(); !strings.Contains(txt, "MEMORY AND SIZE\n") || strings.Contains(txt, "|") {
		t.Errorf("text rendering: %q", txt)
	}
}

func TestScalePolicies(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("spike.local")
	self := spiffeid.RequireFromString("spiffe://spike.local/bench")
	names := map[string]bool{}
	kinds := map[string]int{}
	for j := range 40 {
		p := scalePolicy(td, self, j)
		if names[p.GetName()] || p.GetName() <= "bench" {
			t.Errorf("policy %d: name %q repeats or sorts before the workload's own", j, p.GetName())
		}
		names[p.GetName()] = true
		// Each grants something the workload's policy (read, write,
		// list) does not, so no check of the workload skips it.
		if !strings.Contains(strings.Join(p.GetPermissions(), ","), "meta") &&
			!strings.Contains(strings.Join(p.GetPermissions(), ","), "delete") {
			t.Errorf("policy %d grants %v: only what the workload already has", j, p.GetPermissions())
		}
		if strings.HasPrefix(p.GetPathPattern(), pathPrefix) {
			t.Errorf("policy %d: path %q overlaps the benchmark's secrets", j, p.GetPathPattern())
		}
		switch {
		case p.GetSpiffeIdPattern() == self.String():
			kinds["self"]++
		case strings.HasSuffix(p.GetSpiffeIdPattern(), "/*"):
			kinds["group"]++
		default:
			kinds["one"]++
		}
	}
	if want := map[string]int{"self": 2, "group": 6, "one": 32}; !cmp.Equal(kinds, want) {
		t.Errorf("kinds of policies %v, want %v", kinds, want)
	}
}
