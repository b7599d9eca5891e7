package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const exposition = `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.2897408e+07
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
spike_nexus_audit_batch_size_bucket{le="1"} 3
spike_nexus_audit_batch_size_sum 40
spike_nexus_audit_batch_size_count 10
spike_nexus_requests_total{code="ok",rpc="GetSecret"} 99
`

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	got, err := parseMetrics(strings.NewReader(exposition), wantedMetrics)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		metricRSS:          42897408,
		metricCPU:          12.5,
		metricAuditRecords: 40,
		metricAuditBatches: 10,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total twelve\n"), wantedMetrics); err == nil {
		t.Error("a malformed value was accepted")
	}
}

func TestWatchPeakKeepsTheLargest(t *testing.T) {
	t.Parallel()
	rss := []string{"100", "300", "200"}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := min(int(n.Add(1))-1, len(rss)-1)
		_, _ = w.Write([]byte(metricRSS + " " + rss[i] + "\n"))
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(t.Context())
	p := watchPeak(ctx, newScraper(), srv.URL, metricRSS, time.Millisecond)
	for n.Load() < int64(len(rss)) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	got, ok, err := p.value()
	if !ok || err != nil || got != 300 {
		t.Errorf("peak = %v, %v, %v; want 300, true, nil", got, ok, err)
	}
}

func TestUsageBetween(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := snapshot{
		at: t0, machineBusy: 1000, machineTotal: 2000, self: time.Second,
		nexus: map[string]float64{metricCPU: 10, metricAuditRecords: 100, metricAuditBatches: 50,
			metricAuditWaitSum: 1, metricAuditWaits: 100, metricAcquires: 1000, metricAcquireWait: 0},
		keeper: map[string]float64{metricCPU: 5},
		floor:  map[string]float64{metricCPU: 2},
	}
	b := snapshot{
		at: t0.Add(2 * time.Second), machineBusy: 1300, machineTotal: 2400, self: 2 * time.Second,
		nexus: map[string]float64{metricCPU: 11.5, metricAuditRecords: 400, metricAuditBatches: 150,
			metricAuditWaitSum: 1.6, metricAuditWaits: 400, metricAcquires: 2000, metricAcquireWait: 0.5},
		keeper: map[string]float64{metricCPU: 5.1},
		floor:  map[string]float64{metricCPU: 2.1},
	}
	got := usageBetween(a, b, 2)
	want := usage{Machine: 1.5, Nexus: 0.75, Keeper: 0.05, Floor: 0.05, Bench: 0.5, AuditBatch: 3, AuditWait: 0.002, PoolWait: 0.0005}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("usageBetween (-want +got):\n%s", diff)
	}
	if r := got.rest(); math.Abs(r-0.15) > 1e-9 {
		t.Errorf("rest = %v, want 0.15", r)
	}
	if s := got.server(); math.Abs(s-1.0) > 1e-9 {
		t.Errorf("server = %v, want 1.0 (busy less spike-bench)", s)
	}

	// Nothing scraped, no /proc/stat, no rusage: all unknown.
	blank := usageBetween(snapshot{at: t0, self: -1}, snapshot{at: t0.Add(time.Second), self: -1}, 2)
	for name, v := range map[string]float64{"machine": blank.Machine, "nexus": blank.Nexus, "keeper": blank.Keeper,
		"floor": blank.Floor, "server": blank.server(), "bench": blank.Bench, "audit batch": blank.AuditBatch, "audit wait": blank.AuditWait, "pool wait": blank.PoolWait, "rest": blank.rest()} {
		if !math.IsNaN(v) {
			t.Errorf("%s = %v without measurements, want NaN", name, v)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	busy, total, ok := parseProcStat("cpu  100 5 50 800 20 3 2 1 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n")
	if !ok || busy != 161 || total != 981 {
		t.Errorf("parseProcStat = %v, %v, %v; want 161, 981, true", busy, total, ok)
	}
	if _, _, ok := parseProcStat("intr 1 2 3\n"); ok {
		t.Error("a file without a cpu line was accepted")
	}
}
