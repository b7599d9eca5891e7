package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// section is one part of the report: a title, sentences before and after,
// and a table (header first) that Markdown and plain text render alike.
type section struct {
	title  string
	before []string
	table  [][]string
	after  []string
}

func (r report) sections() []section {
	secs := []section{
		{
			title: "Setup",
			table: append(setupRows(r.Date, r.CPUs, r.CPUModel, r.GoVersion, r.Postgres), [][]string{
				{"caller", r.Caller + "; audit on"},
				{"value size", fmt.Sprintf("%d bytes", r.ValueSize)},
				{"paths", strconv.Itoa(r.Paths)},
				{"duration", r.Duration.String() + " per cell"},
			}...),
		},
		{
			title: "Results",
			before: []string{
				"SPIKE: `GetSecret` of a random path and `PutSecret` of a new version of one, " +
					"through the Connect client that workloads use (HTTP/2 over SPIFFE mTLS). " +
					"Raw: pgx on the same database, one connection per caller: a primary-key " +
					"`SELECT` of a bytea of the value size, and a single-row `INSERT` of one, " +
					"each committed on its own (scratch table `" + rawTable + "`, dropped afterwards).",
				"Floor: the same client calling `spike-nexus floor`, a Connect server with Nexus's " +
					"TLS, SVID check, HTTP and Connect settings whose GetSecret and PutSecret do no " +
					"work (no policy, database, Keeper or audit): the most any Connect-over-mTLS " +
					"server could do here, so SPIKE/floor is what SPIKE's own work leaves of it. " +
					"Columns about the floor are empty when it was not measured.",
				"c is the number of concurrent callers. Throughput counts the successful requests " +
					"over the cell's wall time; latencies are per request (nearest rank). " +
					"A cell in which any request failed shows no figures.",
			},
			table: r.resultTable(),
		},
	}

	targets := r.targets()
	passed := 0
	tt := [][]string{{"target", "measured", "result"}}
	for _, t := range targets {
		tt = append(tt, []string{t.Target, t.Measured, string(t.Verdict)})
		if t.Verdict == pass {
			passed++
		}
	}
	secs = append(secs, section{
		title: "Targets",
		before: []string{"From issue 16, for a 2-core machine with audit on. Server CPU is the machine's busy " +
			"time less spike-bench's: Nexus, Keeper, PostgreSQL and the kernel (and anything else running)."},
		table: tt,
		after: []string{fmt.Sprintf("%d of %d targets pass.", passed, len(targets))},
	}, section{
		title:  "Memory",
		before: []string{"Peak of `" + metricRSS + "`, sampled every 200 ms during the run."},
		table: [][]string{
			{"program", "peak RSS"},
			{"Nexus", rss(r.NexusRSS)},
			{"Keeper", rss(r.KeeperRSS)},
		},
	}, section{
		title: "Where the CPU went",
		before: []string{
			fmt.Sprintf("Cores used during each cell (%d cores in all): the machine's busy time from "+
				"`/proc/stat`, Nexus's, Keeper's and the floor's `%s`, spike-bench's own; \"rest\" is the "+
				"busy time left, mostly PostgreSQL and the kernel. From Nexus's metrics: records per audit "+
				"batch, mean audit wait, and mean wait for a database connection per acquire "+
				"(Nexus's pool; the raw reference has one connection per caller).",
				r.CPUs, metricCPU),
		},
		table: r.usageTable(),
	}, section{
		title: "CPU per operation",
		before: []string{
			"The same figures divided by the operations done: microseconds of CPU per request " +
				"(cores × wall time / operations). The machine's CPU is shared by everything, so " +
				"spike-bench's own cost per request bounds what any server could reach: with " +
				"Nexus, Keeper and PostgreSQL free, the cores could do at most cores ÷ " +
				"(spike-bench µs per request) requests a second. \"ceiling\" is that bound over " +
				"the raw throughput of the same row: no server behind this client could show a " +
				"higher SPIKE/raw on this machine. \"server\" is everything but spike-bench: " +
				"what serving one request cost the machine.",
		},
		table: r.perOpTable(),
	})
	secs = append(secs, r.pgSections()...)

	if r.failedRequests() > 0 {
		et := [][]string{{"cell", "errors", "first error"}}
		for _, row := range r.Rows {
			for _, c := range []struct {
				name string
				s    summary
			}{{"SPIKE " + row.Op, row.SPIKE}, {"floor " + row.Op, row.Floor}, {"raw " + row.Ref, row.Raw}} {
				if c.s.Errors > 0 {
					et = append(et, []string{fmt.Sprintf("%s c=%d", c.name, row.Concurrency),
						strconv.Itoa(c.s.Errors), c.s.FirstError})
				}
			}
		}
		secs = append(secs, section{title: "Errors", table: et})
	}
	return secs
}

// setupRows are the first rows of a report's setup table: when, and on
// what.
func setupRows(date time.Time, cpus int, model, goVersion, postgres string) [][]string {
	return [][]string{
		{"setting", "value"},
		{"date", date.UTC().Format("2006-01-02 15:04 MST")},
		{"machine", machine(cpus, model)},
		{"Go", goVersion},
		{"PostgreSQL", orUnknown(postgres)},
	}
}

func (r report) resultTable() [][]string {
	t := [][]string{{"operation", "c", "HTTP",
		"SPIKE ops/s", "p50", "p90", "p99",
		"floor ops/s", "floor p50", "SPIKE/floor",
		"raw ops/s", "raw p50", "raw p90", "raw p99", "SPIKE/raw"}}
	for _, row := range r.Rows {
		line := []string{row.Op + " vs " + row.Ref, strconv.Itoa(row.Concurrency), protoName(row.Proto)}
		line = append(line, figures(row.SPIKE)...)
		switch ratio, ok := row.floorRatio(); {
		case row.Floor == (summary{}):
			line = append(line, "–", "–", "–")
		case ok:
			line = append(line, figures(row.Floor)[0], ms(row.Floor.P50), percent(ratio))
		default:
			line = append(line, row.Floor.refusal(), "n/a", "n/a")
		}
		line = append(line, figures(row.Raw)...)
		if ratio, ok := row.ratio(); ok {
			line = append(line, percent(ratio))
		} else {
			line = append(line, "n/a")
		}
		t = append(t, line)
	}
	return t
}

// figures is a cell's throughput and latencies, or its refusal.
func figures(s summary) []string {
	if !s.valid() {
		return []string{s.refusal(), "n/a", "n/a", "n/a"}
	}
	return []string{strconv.FormatFloat(s.throughput(), 'f', 0, 64), ms(s.P50), ms(s.P90), ms(s.P99)}
}

func (r report) usageTable() [][]string {
	t := [][]string{{"cell", "busy", "Nexus", "Keeper", "floor", "spike-bench", "rest",
		"audit records/batch", "audit wait ms", "DB pool wait ms"}}
	add := func(name string, c int, u usage) {
		t = append(t, []string{fmt.Sprintf("%s c=%d", name, c),
			cores(u.Machine), cores(u.Nexus), cores(u.Keeper), cores(u.Floor), cores(u.Bench), cores(u.rest()),
			cores(u.AuditBatch), seconds(u.AuditWait), seconds(u.PoolWait)})
	}
	for i, row := range r.Rows {
		add("SPIKE "+row.Op+protoSuffix(row.Proto), row.Concurrency, row.SPIKEUse)
		if row.Floor != (summary{}) {
			add("floor "+row.Op+protoSuffix(row.Proto), row.Concurrency, row.FloorUse)
		}
		if !sameRaw(r.Rows, i) {
			add("raw "+row.Ref, row.Concurrency, row.RawUse)
		}
	}
	return t
}

// perOpTable is CPU per operation, in µs, for each cell, and the ratio a
// free server would reach: the client-bound ceiling.
func (r report) perOpTable() [][]string {
	t := [][]string{{"cell", "total µs/op", "server", "Nexus", "Keeper", "floor", "spike-bench", "rest", "ceiling"}}
	for i, row := range r.Rows {
		for _, c := range []struct {
			name    string
			s       summary
			u       usage
			ceiling bool
		}{
			{"SPIKE " + row.Op + protoSuffix(row.Proto), row.SPIKE, row.SPIKEUse, true},
			{"floor " + row.Op + protoSuffix(row.Proto), row.Floor, row.FloorUse, false},
			{"raw " + row.Ref, row.Raw, row.RawUse, false},
		} {
			if strings.HasPrefix(c.name, "floor ") && c.s == (summary{}) {
				continue // not measured
			}
			if strings.HasPrefix(c.name, "raw ") && sameRaw(r.Rows, i) {
				continue // shown with the row of the first protocol
			}
			name := fmt.Sprintf("%s c=%d", c.name, row.Concurrency)
			if !c.s.valid() {
				t = append(t, []string{name, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"})
				continue
			}
			per := func(cores float64) string { return micros(cores / c.s.throughput()) }
			ceiling := "–"
			if c.ceiling {
				ceiling = "n/a"
				if bench := c.u.Bench / c.s.throughput(); bench > 0 && row.Raw.valid() && row.Raw.throughput() > 0 {
					ceiling = percent(float64(r.CPUs) / bench / row.Raw.throughput())
				}
			}
			t = append(t, []string{name, per(c.u.Machine), per(c.u.server()), per(c.u.Nexus), per(c.u.Keeper),
				per(c.u.Floor), per(c.u.Bench), per(c.u.rest()), ceiling})
		}
	}
	return t
}

// protoSuffix names a row's HTTP version after its cell: "" for HTTP/2
// (what workloads speak), " h1" for HTTP/1.1.
func protoSuffix(p string) string {
	if p == protoH1 {
		return " h1"
	}
	return ""
}

// sameRaw says whether row i repeats the raw reference of the row before
// it (the same cell, measured once for every protocol).
func sameRaw(rows []row, i int) bool {
	return i > 0 && rows[i-1].Op == rows[i].Op && rows[i-1].Concurrency == rows[i].Concurrency
}

// micros formats CPU seconds as whole microseconds; NaN (not measured) as
// "n/a".
func micros(sec float64) string {
	if math.IsNaN(sec) || math.IsInf(sec, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(sec*1e6, 'f', 0, 64)
}

func machine(cpus int, model string) string {
	s := fmt.Sprintf("%d CPUs", cpus)
	if model != "" {
		s += " (" + model + ")"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func rss(m memory) string {
	if m.Measured {
		return mib(m.Bytes)
	}
	if m.Why != "" {
		return "not measured: " + m.Why
	}
	return "not measured"
}

// markdown renders the report as the Markdown of docs/benchmarks.md.
func (r report) markdown() string {
	var b strings.Builder
	b.WriteString("# SPIKE benchmarks\n\n")
	b.WriteString("Written by `make bench` (`deploy/local/bench.sh` runs `e2e/cmd/spike-bench` " +
		"against a fresh local stack). Do not edit: run it again.\n")
	writeMarkdownSections(&b, r.sections())
	return b.String()
}

// writeMarkdownSections renders secs as Markdown into b.
func writeMarkdownSections(b *strings.Builder, secs []section) {
	for _, s := range secs {
		fmt.Fprintf(b, "\n## %s\n\n", s.title)
		for _, p := range s.before {
			b.WriteString(p + "\n\n")
		}
		for i, line := range s.table {
			b.WriteString("|")
			for _, cell := range line {
				b.WriteString(" " + markdownCell(cell) + " |")
			}
			b.WriteString("\n")
			if i == 0 {
				b.WriteString("|" + strings.Repeat("---|", len(line)) + "\n")
			}
		}
		for _, p := range s.after {
			b.WriteString("\n" + p + "\n")
		}
	}
}

// markdownCell keeps a cell on one line and its pipes out of the table's.
func markdownCell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// text renders the report as aligned plain-text tables for a terminal.
func (r report) text() string { return sectionsText(r.sections()) }

// sectionsText renders secs as aligned plain-text tables.
func sectionsText(secs []section) string {
	var b strings.Builder
	for i, s := range secs {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(strings.ToUpper(s.title) + "\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, line := range s.table {
			fmt.Fprintln(tw, strings.Join(line, "\t"))
		}
		tw.Flush()
		for _, p := range s.after {
			b.WriteString(p + "\n")
		}
	}
	return b.String()
}
