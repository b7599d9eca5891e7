package main

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage says where the machine's CPU went during one cell, in cores (1.0
// is one core busy for the whole cell), and what Nexus's own counters say
// about its waits. NaN means not measured.
type usage struct {
	Machine, Nexus, Keeper, Bench float64
	// Floor is the protocol floor's process (spike-nexus floor).
	Floor float64
	// AuditBatch is the mean number of records per audit batch write.
	AuditBatch float64
	// AuditWait is the mean time from queueing an audit record to the end
	// of its batch's write, in seconds.
	AuditWait float64
	// PoolWait is the mean time Nexus waited for a free database
	// connection, per acquire, in seconds.
	PoolWait float64
	// PG is what PostgreSQL counted (statements, WAL), when -pg-stats-url
	// is set.
	PG pgUsage
}

// rest is the busy CPU not used by Nexus, Keeper, the floor or
// spike-bench: mostly PostgreSQL and the kernel's work for the servers.
func (u usage) rest() float64 {
	return math.Max(u.Machine-nz(u.Nexus)-nz(u.Keeper)-nz(u.Floor)-nz(u.Bench), 0) // NaN when Machine is
}

// server is the busy CPU not used by spike-bench: what serving the
// requests cost (Nexus, Keeper, PostgreSQL and the kernel, or the floor
// and the kernel). NaN when either is unknown.
func (u usage) server() float64 {
	return math.Max(u.Machine-u.Bench, 0)
}

func nz(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// snapshot is the state of the counters at one moment.
type snapshot struct {
	at time.Time
	// machineBusy and machineTotal are clock ticks from /proc/stat;
	// machineTotal is 0 when unknown.
	machineBusy, machineTotal float64
	// self is spike-bench's CPU time; negative when unknown.
	self time.Duration
	// nexus, keeper and floor are their metrics; nil when not scraped.
	nexus, keeper, floor map[string]float64
	// pg is PostgreSQL's counters; zero when not read.
	pg pgSnap
}

// probe takes snapshots, scraping the metrics endpoints that are set.
type probe struct {
	scraper                       scraper
	nexusURL, keeperURL, floorURL string
	// pg reads PostgreSQL's counters; nil: none.
	pg *pgStats
}

func (p probe) take(ctx context.Context) snapshot {
	s := snapshot{self: selfCPU()}
	if busy, total, ok := readProcStat(); ok {
		s.machineBusy, s.machineTotal = busy, total
	}
	if p.nexusURL != "" {
		s.nexus, _ = p.scraper.scrape(ctx, p.nexusURL)
	}
	if p.keeperURL != "" {
		s.keeper, _ = p.scraper.scrape(ctx, p.keeperURL)
	}
	if p.floorURL != "" {
		s.floor, _ = p.scraper.scrape(ctx, p.floorURL)
	}
	s.at = time.Now()
	if p.pg != nil {
		// After the clock: these statements are PostgreSQL's, not the cell's.
		s.pg, _ = p.pg.take(ctx)
	}
	return s
}

// usageBetween is the usage from a to b on a machine with cpus cores.
func usageBetween(a, b snapshot, cpus int) usage {
	nan := math.NaN()
	u := usage{Machine: nan, Nexus: nan, Keeper: nan, Floor: nan, Bench: nan, AuditBatch: nan, AuditWait: nan, PoolWait: nan}
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return u
	}
	if a.machineTotal > 0 && b.machineTotal > a.machineTotal {
		u.Machine = (b.machineBusy - a.machineBusy) / (b.machineTotal - a.machineTotal) * float64(cpus)
	}
	if a.self >= 0 && b.self >= 0 {
		u.Bench = (b.self - a.self).Seconds() / wall
	}
	delta := func(x, y map[string]float64, name string) float64 {
		vx, okx := x[name]
		vy, oky := y[name]
		if !okx || !oky {
			return nan
		}
		return vy - vx
	}
	ratio := func(num, den float64) float64 {
		if math.IsNaN(num) || math.IsNaN(den) || den <= 0 {
			return nan
		}
		return num / den
	}
	u.Nexus = delta(a.nexus, b.nexus, metricCPU) / wall
	u.Keeper = delta(a.keeper, b.keeper, metricCPU) / wall
	u.Floor = delta(a.floor, b.floor, metricCPU) / wall
	u.AuditBatch = ratio(delta(a.nexus, b.nexus, metricAuditRecords), delta(a.nexus, b.nexus, metricAuditBatches))
	u.AuditWait = ratio(delta(a.nexus, b.nexus, metricAuditWaitSum), delta(a.nexus, b.nexus, metricAuditWaits))
	u.PG = pgBetween(a.pg, b.pg)
	u.PoolWait = ratio(delta(a.nexus, b.nexus, metricAcquireWait), delta(a.nexus, b.nexus, metricAcquires))
	return u
}

// readProcStat returns the machine's busy and total CPU ticks from
// /proc/stat (Linux); ok is false elsewhere.
func readProcStat() (busy, total float64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	return parseProcStat(string(b))
}

// parseProcStat reads the aggregate "cpu" line: user nice system idle
// iowait irq softirq steal (guest time is already in user and nice).
func parseProcStat(s string) (busy, total float64, ok bool) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var ticks [8]float64
	for i := range ticks {
		v, err := strconv.ParseFloat(f[i+1], 64)
		if err != nil {
			return 0, 0, false
		}
		ticks[i] = v
		total += v
	}
	idle := ticks[3] + ticks[4]
	return total - idle, total, true
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
