package main

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// row pairs a SPIKE operation with its raw reference at one concurrency.
type row struct {
	// Op is the SPIKE operation ("get", "put"), Ref the raw statement
	// it is compared with ("SELECT", "INSERT").
	Op, Ref          string
	Concurrency      int
	SPIKE, Raw       summary
	SPIKEUse, RawUse usage
}

// ratio is SPIKE's throughput as a fraction of the raw reference's; ok is
// false when either cell shows no figures.
func (r row) ratio() (float64, bool) {
	if !r.SPIKE.valid() || !r.Raw.valid() || r.Raw.throughput() == 0 {
		return 0, false
	}
	return r.SPIKE.throughput() / r.Raw.throughput(), true
}

// memory is a program's peak resident set size; Why says why it was not
// measured.
type memory struct {
	Bytes    float64
	Measured bool
	Why      string
}

// report is one run's results and the circumstances they were measured in.
type report struct {
	Date      time.Time
	CPUs      int
	CPUModel  string
	GoVersion string
	Postgres  string
	// Caller says who called Nexus, e.g. "admin spiffe://... with an admin token".
	Caller              string
	ValueSize, Paths    int
	Duration            time.Duration
	Rows                []row
	NexusRSS, KeeperRSS memory
}

// failedRequests counts the failed requests of every cell.
func (r report) failedRequests() int {
	n := 0
	for _, row := range r.Rows {
		n += row.SPIKE.Errors + row.Raw.Errors
	}
	return n
}

// verdict is a target's outcome.
type verdict string

const (
	pass    verdict = "pass"
	miss    verdict = "miss"
	unknown verdict = "n/a"
)

// targetResult is one target of issue 6, as measured.
type targetResult struct {
	Target   string
	Measured string
	Verdict  verdict
}

// The targets (issue 6, on a 2-core machine, audit on).
const (
	minGetRatio = 0.40
	minPutRatio = 0.30
	maxGetP99   = 10 * time.Millisecond
	maxNexusRSS = 100 << 20
)

// targets evaluates the targets against the report. A target whose cells
// were not run, or failed, is unknown rather than missed.
func (r report) targets() []targetResult {
	var out []targetResult
	for _, t := range []struct {
		op, ref string
		c       int
		min     float64
	}{
		{"get", "SELECT", 16, minGetRatio},
		{"get", "SELECT", 64, minGetRatio},
		{"put", "INSERT", 16, minPutRatio},
		{"put", "INSERT", 64, minPutRatio},
	} {
		res := targetResult{Target: fmt.Sprintf("%s ≥ %.0f%% of raw %s at c=%d", t.op, t.min*100, t.ref, t.c)}
		row, ok := r.row(t.op, t.c)
		switch ratio, valid := row.ratio(); {
		case !ok:
			res.Measured, res.Verdict = fmt.Sprintf("not run (no c=%d)", t.c), unknown
		case !valid:
			res.Measured, res.Verdict = cellsRefusal(row), unknown
		default:
			res.Measured, res.Verdict = percent(ratio), check(ratio >= t.min)
		}
		out = append(out, res)
	}

	res := targetResult{Target: fmt.Sprintf("p99 get < %d ms at c=16", maxGetP99.Milliseconds())}
	switch row, ok := r.row("get", 16); {
	case !ok:
		res.Measured, res.Verdict = "not run (no c=16)", unknown
	case !row.SPIKE.valid():
		res.Measured, res.Verdict = row.SPIKE.refusal(), unknown
	default:
		res.Measured, res.Verdict = ms(row.SPIKE.P99), check(row.SPIKE.P99 < maxGetP99)
	}
	out = append(out, res)

	res = targetResult{Target: fmt.Sprintf("Nexus peak RSS < %d MiB", maxNexusRSS>>20)}
	if r.NexusRSS.Measured {
		res.Measured, res.Verdict = mib(r.NexusRSS.Bytes), check(r.NexusRSS.Bytes < maxNexusRSS)
	} else {
		res.Measured, res.Verdict = "not measured", unknown
	}
	return append(out, res)
}

func (r report) row(op string, c int) (row, bool) {
	for _, row := range r.Rows {
		if row.Op == op && row.Concurrency == c {
			return row, true
		}
	}
	return row{}, false
}

func check(ok bool) verdict {
	if ok {
		return pass
	}
	return miss
}

// cellsRefusal says why a row has no ratio.
func cellsRefusal(r row) string {
	if s := r.SPIKE.refusal(); s != "" {
		return "SPIKE " + s
	}
	return "raw " + r.Raw.refusal()
}

func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

func mib(b float64) string { return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) + " MiB" }

// cores formats a usage figure; NaN is "–".
func cores(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// seconds formats a mean wait in seconds as milliseconds; NaN is "–".
func seconds(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v*1000, 'f', 2, 64)
}
