// Command spike-bench is SPIKE's load generator (`make bench`). Against a
// running stack it measures secret get and put throughput and latency at
// several concurrencies through the Connect client that workloads use, next
// to raw pgx reads and writes of the same size on the same PostgreSQL, and
// writes the table, Nexus's and Keeper's peak memory and the targets of
// issue 6 to docs/benchmarks.md.
//
//	spike-bench -token-file .spike-bench/token -nexus-metrics http://127.0.0.1:8654/metrics
//
// A cell in which any request failed shows its error count instead of
// figures, and spike-bench then exits 1 after writing the report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/spike-dev/spike/shared/svid"
)

// rssInterval is how often Nexus's and Keeper's memory is sampled.
const rssInterval = 200 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spike-bench:", err)
		os.Exit(1)
	}
}

// run measures, prints the report to stdout and writes it to the -out file.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	token, err := readToken(cfg.TokenFile)
	if err != nil {
		return err
	}
	src, err := svid.NewSource(ctx, cfg.SVID)
	if err != nil {
		return fmt.Errorf("load the SVID: %w", err)
	}
	defer src.Close()
	self, err := src.ID()
	if err != nil {
		return fmt.Errorf("read the SVID: %w", err)
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "spike-bench: "+format+"\n", a...) }
	if cfg.Scale != nil {
		return runScale(ctx, cfg, src, self, stdout, progress)
	}

	progress("calling %s as %s", cfg.NexusURL, caller(self.String(), token != ""))
	spike := map[string]spikeTarget{}
	floor := map[string]spikeTarget{}
	for _, p := range cfg.Protocols {
		spike[p] = newSpikeTarget(src, cfg.NexusURL, cfg.NexusID, token, cfg.ValueSize, cfg.Paths, p == protoH1)
		if cfg.FloorURL != "" {
			// The floor serves with Nexus's SVID and ignores the token.
			floor[p] = newSpikeTarget(src, cfg.FloorURL, cfg.NexusID, "", cfg.ValueSize, cfg.Paths, p == protoH1)
		}
	}
	progress("writing %d secrets under %s", cfg.Paths, pathPrefix)
	if err := spike[cfg.Protocols[0]].seed(ctx); err != nil {
		return fmt.Errorf("write the benchmark's secrets: %w", err)
	}
	raw, err := openRaw(ctx, cfg.DatabaseURL, slices.Max(cfg.Concurrency), cfg.ValueSize, cfg.Paths)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := raw.close(ctx); cerr != nil && err == nil {
			err = cerr
		}
	}()

	sc := newScraper()
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var nexusPeak, keeperPeak *peak
	if cfg.NexusMetrics != "" {
		nexusPeak = watchPeak(sampling, sc, cfg.NexusMetrics, metricRSS, rssInterval)
	}
	if cfg.KeeperMetrics != "" {
		keeperPeak = watchPeak(sampling, sc, cfg.KeeperMetrics, metricRSS, rssInterval)
	}
	pr := probe{scraper: sc, nexusURL: cfg.NexusMetrics, keeperURL: cfg.KeeperMetrics, floorURL: cfg.FloorMetrics}
	if cfg.PGStatsURL != "" {
		if pr.pg, err = openPGStats(ctx, cfg.PGStatsURL, cfg.PGStatsDB); err != nil {
			return err
		}
		defer func() { _ = pr.pg.close(context.WithoutCancel(ctx)) }()
	}
	if cfg.FloorURL != "" {
		progress("measuring the protocol floor at %s beside SPIKE", cfg.FloorURL)
	}
	prof, err := newProfiler(cfg.Profile, cfg.NexusMetrics)
	if err != nil {
		return err
	}

	// One cell: a load run between two snapshots of the counters.
	cell := func(name string, c int, op func(context.Context) error, profiled bool) (summary, usage, error) {
		before := pr.take(ctx)
		done := func() error { return nil }
		if profiled {
			done = prof.during(ctx, fmt.Sprintf("%s-c%d", name, c), cfg.Duration)
		}
		s := runLoad(ctx, c, cfg.Duration, op)
		if err := done(); err != nil {
			return s, usage{}, err
		}
		u := usageBetween(before, pr.take(ctx), runtime.NumCPU())
		if s.valid() {
			progress("%-15s c=%-3d %8.0f ops/s  p50 %s  p90 %s  p99 %s", name, c, s.throughput(), ms(s.P50), ms(s.P90), ms(s.P99))
		} else {
			progress("%-15s c=%-3d %s (first: %s)", name, c, s.refusal(), s.FirstError)
		}
		return s, u, nil
	}
	var rows []row
	for _, op := range []struct {
		op, ref string
		target  func(spikeTarget) func(context.Context) error
		rawOp   func(context.Context) error
	}{
		{"get", "SELECT", func(t spikeTarget) func(context.Context) error { return t.get }, raw.selectRow},
		{"put", "INSERT", func(t spikeTarget) func(context.Context) error { return t.put }, raw.insertRow},
	} {
		if !slices.Contains(cfg.Ops, op.op) {
			continue
		}
		for _, c := range cfg.Concurrency {
			var byProto []row
			for _, p := range cfg.Protocols {
				r := row{Op: op.op, Ref: op.ref, Concurrency: c, Proto: p}
				var err error
				if r.SPIKE, r.SPIKEUse, err = cell("SPIKE "+op.op+" "+p, c, op.target(spike[p]), true); err != nil {
					return err
				}
				if cfg.FloorURL != "" {
					if r.Floor, r.FloorUse, err = cell("floor "+op.op+" "+p, c, op.target(floor[p]), false); err != nil {
						return err
					}
				}
				byProto = append(byProto, r)
			}
			// One raw reference for the row of each protocol.
			rawSum, rawUse := summary{}, usageBetween(snapshot{}, snapshot{}, 1) // not measured
			if cfg.Raw {
				if rawSum, rawUse, err = cell("raw "+op.ref, c, op.rawOp, false); err != nil {
					return err
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			for _, r := range byProto {
				r.Raw, r.RawUse = rawSum, rawUse
				rows = append(rows, r)
			}
		}
	}
	stopSampling()

	rep := report{
		Date:      time.Now(),
		CPUs:      runtime.NumCPU(),
		CPUModel:  cpuModel(),
		GoVersion: runtime.Version(),
		Postgres:  raw.serverVersion(ctx),
		Caller:    caller(self.String(), token != ""),
		ValueSize: cfg.ValueSize,
		Paths:     cfg.Paths,
		Duration:  cfg.Duration,
		Rows:      rows,
		NexusRSS:  peakMemory(nexusPeak),
		KeeperRSS: peakMemory(keeperPeak),
	}
	fmt.Fprint(stdout, rep.text())
	if cfg.Out != "" {
		if err := writeFile(cfg.Out, rep.markdown()); err != nil {
			return err
		}
		progress("wrote %s", cfg.Out)
	}
	if n := rep.failedRequests(); n > 0 {
		return fmt.Errorf("%d requests failed; the report shows the first error of each cell", n)
	}
	return nil
}

func caller(id string, admin bool) string {
	if admin {
		return "admin " + id + " with an admin token"
	}
	return "workload " + id
}

func peakMemory(p *peak) memory {
	if p == nil {
		return memory{}
	}
	v, ok, err := p.value()
	if !ok {
		m := memory{Why: "no sample"}
		if err != nil {
			m.Why = err.Error()
		}
		return m
	}
	return memory{Bytes: v, Measured: true}
}

// writeFile writes content to path, creating its directory if needed.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}
