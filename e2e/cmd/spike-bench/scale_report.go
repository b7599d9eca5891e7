package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// flatTolerance is how much slower, or costlier in server CPU, a request
// may be than at the baseline and still count as flat: short cells on a
// shared 2-core machine vary by about this much between runs.
const flatTolerance = 1.3

// targetScaleSecrets is where issue 16's memory target applies.
const targetScaleSecrets = 1_000_000

// scaleRow is one operation measured at one stage.
type scaleRow struct {
	Op  string
	Sum summary
	Use usage
}

// scaleStage is the data grown to Secrets secrets and Policies policies,
// what growing it took, and the operations measured then.
type scaleStage struct {
	Secrets, Policies int
	Population        population
	Rows              []scaleRow
	// NexusRSS is Nexus's RSS after the stage's cells, NexusPeak the
	// highest sampled during the stage (writing included).
	NexusRSS, NexusPeak memory
	// DBSize is pg_database_size after the stage, -1 when unknown.
	DBSize int64
}

// scaleReport is one run of the scale mode.
type scaleReport struct {
	Date                 time.Time
	CPUs                 int
	CPUModel, GoVersion  string
	Postgres, Caller     string
	ValueSize            int
	Duration             time.Duration
	Concurrency, Writers int
	Stages               []scaleStage
}

func (r scaleReport) failedRequests() int {
	n := 0
	for _, st := range r.Stages {
		for _, row := range st.Rows {
			n += row.Sum.Errors
		}
	}
	return n
}

// baseline returns the row a row of stage i is compared with: the same
// operation at the first stage for the secret stages, and at the last
// stage with one policy for the policy stages (so that only the policies
// differ). ok is false for a row that is its own baseline or has none.
func (r scaleReport) baseline(i int, op string) (scaleRow, bool) {
	base := 0
	if r.Stages[i].Policies > 1 {
		for j, st := range r.Stages {
			if st.Policies == 1 {
				base = j
			}
		}
	}
	if base == i {
		return scaleRow{}, false
	}
	for _, row := range r.Stages[base].Rows {
		if row.Op == op {
			return row, true
		}
	}
	return scaleRow{}, false
}

// serverPerOp is the server CPU per request in seconds (everything but
// spike-bench); NaN when unmeasured.
func serverPerOp(row scaleRow) float64 {
	if !row.Sum.valid() || row.Sum.throughput() == 0 {
		return math.NaN()
	}
	return row.Use.server() / row.Sum.throughput()
}

// flat compares row with its baseline: the ratios of p50 and of server
// CPU per request, and whether both are within flatTolerance.
func flat(row, base scaleRow) string {
	if !row.Sum.valid() || !base.Sum.valid() || base.Sum.P50 <= 0 {
		return "n/a"
	}
	lat := float64(row.Sum.P50) / float64(base.Sum.P50)
	verdict := "flat"
	s := "p50 ×" + strconv.FormatFloat(lat, 'f', 2, 64)
	if lat > flatTolerance {
		verdict = "no: slower"
	}
	cpu, bcpu := serverPerOp(row), serverPerOp(base)
	if !math.IsNaN(cpu) && !math.IsNaN(bcpu) && bcpu > 0 {
		c := cpu / bcpu
		s += ", CPU ×" + strconv.FormatFloat(c, 'f', 2, 64)
		if c > flatTolerance {
			if verdict == "flat" {
				verdict = "no: costlier"
			} else {
				verdict = "no: slower, costlier"
			}
		}
	}
	return verdict + " (" + s + ")"
}

func policyCounts(counts []string) string {
	if len(counts) == 0 {
		return "only the workload's own"
	}
	return strings.Join(counts, ", ") + " (at the most secrets)"
}

func count(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func dbSize(n int64) string {
	if n < 0 {
		return "not measured"
	}
	return mib(float64(n))
}

func (r scaleReport) sections() []section {
	var sizes, policies []string
	for _, st := range r.Stages {
		if st.Population.What == "policies" {
			policies = append(policies, count(st.Policies))
		} else {
			sizes = append(sizes, count(st.Secrets))
		}
	}
	secs := []section{{
		title: "Setup",
		table: append(setupRows(r.Date, r.CPUs, r.CPUModel, r.GoVersion, r.Postgres), [][]string{
			{"caller", r.Caller + "; audit on; policies written by the admin"},
			{"secrets", strings.Join(sizes, ", ") + fmt.Sprintf(" (1 in %d with %d versions)", scaleDirSize, scaleVersions)},
			{"policies", policyCounts(policies)},
			{"value size", fmt.Sprintf("%d bytes", r.ValueSize)},
			{"cells", fmt.Sprintf("%s each, %d concurrent callers, HTTP/2", r.Duration, r.Concurrency)},
			{"writers", fmt.Sprintf("%d concurrent PutSecret callers (at most %d PutPolicy callers)", r.Writers, policyWriters)},
		}...),
	}, {
		title: "Results",
		before: []string{
			"The secrets are written through Nexus's API (PutSecret as the workload, so every row is sealed and bound), " +
				fmt.Sprintf("in directories of %d under %#q; the first secret of each directory (1%%) has %d versions. ",
					scaleDirSize, scalePrefix, scaleVersions) +
				"The data grows from one size to the next, and each size is measured once written.",
			"Operations: `GetSecret` of a random secret; of a secret with 10 versions; `PutSecret` of a new version of " +
				"a random secret with one; `ListSecrets` of a random directory (100 secrets, one page). " +
				"With policies: the workload's own policy plus policies for other workloads (most for one workload " +
				"each, some for groups of workloads by glob, 1 in 20 for this workload on other paths), each granting " +
				"something the workload's own does not, so that each check of the workload goes through them all.",
			fmt.Sprintf("CPU per request in µs: Nexus's own (`%s`), \"rest\" (the machine's busy time less Nexus, Keeper "+
				"and spike-bench: PostgreSQL and the kernel), and \"server\" (everything but spike-bench). "+
				"\"Flat?\" compares p50 and server CPU per request with the same operation at the smallest size "+
				"(the policy rows: at the most secrets with only the workload's policy); a ratio above %.1f is "+
				"\"no\" (cells this short on a shared machine vary by about that much).", metricCPU, flatTolerance),
		},
		table: r.resultTable(),
	}, {
		title:  "Memory and size",
		before: []string{"Nexus's `" + metricRSS + "` after each size's cells, and its peak during the size (writing included, sampled every 200 ms); the database's `pg_database_size`."},
		table:  r.memoryTable(),
		after:  []string{r.rssTarget()},
	}, {
		title: "Writing the data",
		before: []string{
			"How long growing the data took: all through Nexus's API, as above. A secret with 10 versions is 10 " +
				"PutSecret calls. CPU per call as in the results.",
		},
		table: r.populationTable(),
	}}
	if r.failedRequests() > 0 {
		et := [][]string{{"cell", "errors", "first error"}}
		for _, st := range r.Stages {
			for _, row := range st.Rows {
				if row.Sum.Errors > 0 {
					et = append(et, []string{fmt.Sprintf("%s at %s secrets, %s policies", row.Op, count(st.Secrets), count(st.Policies)),
						strconv.Itoa(row.Sum.Errors), row.Sum.FirstError})
				}
			}
		}
		secs = append(secs, section{title: "Errors", table: et})
	}
	return secs
}

func (r scaleReport) resultTable() [][]string {
	t := [][]string{{"secrets", "policies", "operation", "ops/s", "p50", "p99",
		"Nexus µs/op", "rest µs/op", "server µs/op", "Flat?"}}
	for i, st := range r.Stages {
		for _, row := range st.Rows {
			line := []string{count(st.Secrets), count(st.Policies), row.Op}
			if row.Sum.valid() {
				per := func(cores float64) string { return micros(cores / row.Sum.throughput()) }
				line = append(line, strconv.FormatFloat(row.Sum.throughput(), 'f', 0, 64), ms(row.Sum.P50), ms(row.Sum.P99),
					per(row.Use.Nexus), per(row.Use.rest()), per(row.Use.server()))
			} else {
				line = append(line, row.Sum.refusal(), "n/a", "n/a", "n/a", "n/a", "n/a")
			}
			if base, ok := r.baseline(i, row.Op); ok {
				line = append(line, flat(row, base))
			} else {
				line = append(line, "baseline")
			}
			t = append(t, line)
		}
	}
	return t
}

func (r scaleReport) memoryTable() [][]string {
	t := [][]string{{"secrets", "policies", "Nexus RSS", "Nexus peak RSS", "database size"}}
	for _, st := range r.Stages {
		t = append(t, []string{count(st.Secrets), count(st.Policies), rss(st.NexusRSS), rss(st.NexusPeak), dbSize(st.DBSize)})
	}
	return t
}

func (r scaleReport) populationTable() [][]string {
	t := [][]string{{"grown to", "added", "calls", "time", "added/s", "calls/s", "s per 1k added", "Nexus µs/call", "server µs/call"}}
	for _, st := range r.Stages {
		p := st.Population
		to := count(st.Secrets) + " secrets"
		if p.What == "policies" {
			to = count(st.Policies) + " policies"
		}
		line := []string{to, count(p.Added), count(p.Requests), p.Elapsed.Round(100 * time.Millisecond).String()}
		if p.Elapsed <= 0 || p.Added <= 0 {
			t = append(t, append(line, "n/a", "n/a", "n/a", "n/a", "n/a"))
			continue
		}
		sec := p.Elapsed.Seconds()
		per := func(cores float64) string { return micros(cores * sec / float64(p.Requests)) }
		t = append(t, append(line,
			strconv.FormatFloat(float64(p.Added)/sec, 'f', 0, 64),
			strconv.FormatFloat(float64(p.Requests)/sec, 'f', 0, 64),
			strconv.FormatFloat(sec/float64(p.Added)*1000, 'f', 1, 64),
			per(p.Use.Nexus), per(p.Use.server())))
	}
	return t
}

// rssTarget says how issue 16's memory target fared: Nexus's peak RSS at
// 1M secrets.
func (r scaleReport) rssTarget() string {
	target := fmt.Sprintf("Target (issue 16): Nexus RSS ≤ %d MiB at %s secrets: ", maxNexusRSS>>20, count(targetScaleSecrets))
	for _, st := range r.Stages {
		if st.Secrets < targetScaleSecrets || st.Population.What == "policies" {
			continue
		}
		if !st.NexusPeak.Measured {
			return target + "not measured (" + rss(st.NexusPeak) + ")."
		}
		return target + fmt.Sprintf("peak %s at %s secrets: %s.", mib(st.NexusPeak.Bytes), count(st.Secrets),
			check(st.NexusPeak.Bytes <= maxNexusRSS))
	}
	return target + "not run (no size of " + count(targetScaleSecrets) + " secrets or more)."
}

// markdown renders the report as the Markdown of docs/benchmarks-scale.md.
func (r scaleReport) markdown() string {
	var b strings.Builder
	b.WriteString("# SPIKE at scale\n\n")
	b.WriteString("Written by `make bench-scale` (`deploy/local/bench-scale.sh` runs `e2e/cmd/spike-bench -mode scale` " +
		"against a fresh local stack). Do not edit: run it again.\n")
	writeMarkdownSections(&b, r.sections())
	return b.String()
}

func (r scaleReport) text() string { return sectionsText(r.sections()) }
