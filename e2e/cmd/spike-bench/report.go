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
	Op, Ref     string
	Concurrency int
	// Proto is the HTTP version SPIKE and the floor were called over
	// (protoH2, protoH1); the raw reference is the same for each.
	Proto      string
	SPIKE, Raw summary
	// Floor is the protocol floor's cell (a zero summary when not run).
	Floor                      summary
	SPIKEUse, RawUse, FloorUse usage
}

// floorRatio is SPIKE's throughput as a fraction of the protocol
// floor's; ok is false when either cell shows no figures.
func (r row) floorRatio() (float64, bool) {
	if !r.SPIKE.valid() || !r.Floor.valid() || r.Floor.throughput() == 0 {
		return 0, false
	}
	return r.SPIKE.throughput() / r.Floor.throughput(), true
}

// serverPerOp is the CPU, in seconds, that serving one SPIKE request cost
// the machine besides the client; ok is false when unmeasured.
func (r row) serverPerOp() (float64, bool) {
	cpu := r.SPIKEUse.server()
	if !r.SPIKE.valid() || math.IsNaN(cpu) || cpu <= 0 || r.SPIKE.throughput() == 0 {
		return 0, false
	}
	return cpu / r.SPIKE.throughput(), true
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
		n += row.SPIKE.Errors + row.Raw.Errors + row.Floor.Errors
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

// targetResult is one target of issue 16, as measured.
type targetResult struct {
	Target   string
	Measured string
	Verdict  verdict
}

// The targets (issue 16, one run on a 2-core machine, audit on).
const (
	minGetFloor     = 0.60
	minGetRatio     = 0.20
	minPutRatio     = 0.30
	maxGetServerCPU = 130 * time.Microsecond
	maxPutServerCPU = 400 * time.Microsecond
	maxGetP99       = 5 * time.Millisecond
	maxGetP50c1     = 800 * time.Microsecond
	maxPutP50c1     = 1200 * time.Microsecond
	maxNexusRSS     = 100 << 20
)

// targets evaluates the targets against the report. A target whose cells
// were not run, or failed, is unknown rather than missed.
func (r report) targets() []targetResult {
	var out []targetResult
	ratioTarget := func(name, op, proto string, c int, least float64, ratio func(row) (float64, bool), refusal func(row) string) {
		res := targetResult{Target: fmt.Sprintf("%s at c=%d over %s", name, c, protoName(proto))}
		row, ok := r.row(op, c, proto)
		switch v, valid := ratio(row); {
		case !ok:
			res.Measured, res.Verdict = fmt.Sprintf("not run (no c=%d)", c), unknown
		case !valid:
			res.Measured, res.Verdict = refusal(row), unknown
		default:
			res.Measured, res.Verdict = percent(v), check(v >= least)
		}
		out = append(out, res)
	}
	// Gets over each HTTP version measured; the rest over HTTP/2, what
	// workloads' client speaks.
	for _, p := range r.protocols() {
		for _, c := range []int{16, 64} {
			ratioTarget(fmt.Sprintf("get ≥ %.0f%% of the protocol floor", minGetFloor*100), "get", p, c, minGetFloor,
				row.floorRatio, floorRefusal)
			ratioTarget(fmt.Sprintf("get ≥ %.0f%% of raw SELECT", minGetRatio*100), "get", p, c, minGetRatio,
				row.ratio, cellsRefusal)
		}
	}
	for _, c := range []int{16, 64} {
		ratioTarget(fmt.Sprintf("put ≥ %.0f%% of raw INSERT", minPutRatio*100), "put", protoH2, c, minPutRatio,
			row.ratio, cellsRefusal)
	}

	for _, t := range []struct {
		op  string
		max time.Duration
	}{{"get", maxGetServerCPU}, {"put", maxPutServerCPU}} {
		res := targetResult{Target: fmt.Sprintf("server CPU per %s ≤ %d µs at c=16", t.op, t.max.Microseconds())}
		row, ok := r.row(t.op, 16, protoH2)
		switch per, valid := row.serverPerOp(); {
		case !ok:
			res.Measured, res.Verdict = "not run (no c=16)", unknown
		case !valid:
			res.Measured, res.Verdict = "not measured", unknown
		default:
			res.Measured, res.Verdict = micros(per)+" µs", check(per <= t.max.Seconds())
		}
		out = append(out, res)
	}

	for _, t := range []struct {
		op, stat string
		c        int
		max      time.Duration
		pick     func(summary) time.Duration
	}{
		{"get", "p99", 16, maxGetP99, func(s summary) time.Duration { return s.P99 }},
		{"get", "p50", 1, maxGetP50c1, func(s summary) time.Duration { return s.P50 }},
		{"put", "p50", 1, maxPutP50c1, func(s summary) time.Duration { return s.P50 }},
	} {
		res := targetResult{Target: fmt.Sprintf("%s %s ≤ %s at c=%d", t.stat, t.op, ms(t.max), t.c)}
		switch row, ok := r.row(t.op, t.c, protoH2); {
		case !ok:
			res.Measured, res.Verdict = fmt.Sprintf("not run (no c=%d)", t.c), unknown
		case !row.SPIKE.valid():
			res.Measured, res.Verdict = row.SPIKE.refusal(), unknown
		default:
			res.Measured, res.Verdict = ms(t.pick(row.SPIKE)), check(t.pick(row.SPIKE) <= t.max)
		}
		out = append(out, res)
	}

	res := targetResult{Target: fmt.Sprintf("Nexus peak RSS ≤ %d MiB", maxNexusRSS>>20)}
	if r.NexusRSS.Measured {
		res.Measured, res.Verdict = mib(r.NexusRSS.Bytes), check(r.NexusRSS.Bytes <= maxNexusRSS)
	} else {
		res.Measured, res.Verdict = "not measured", unknown
	}
	return append(out, res)
}

// row returns the row of op at concurrency c over proto (protoH2 also
// matches a row without one).
func (r report) row(op string, c int, proto string) (row, bool) {
	for _, row := range r.Rows {
		if row.Op == op && row.Concurrency == c && (row.Proto == proto || proto == protoH2 && row.Proto == "") {
			return row, true
		}
	}
	return row{}, false
}

// protocols are the HTTP versions of the report's rows, HTTP/2 first.
func (r report) protocols() []string {
	out := []string{protoH2}
	for _, row := range r.Rows {
		if row.Proto == protoH1 {
			return append(out, protoH1)
		}
	}
	return out
}

// protoName is how the report names an HTTP version.
func protoName(p string) string {
	if p == protoH1 {
		return "HTTP/1.1"
	}
	return "HTTP/2"
}

func check(ok bool) verdict {
	if ok {
		return pass
	}
	return miss
}

// floorRefusal says why a row has no ratio to the floor.
func floorRefusal(r row) string {
	if s := r.SPIKE.refusal(); s != "" {
		return "SPIKE " + s
	}
	if r.Floor == (summary{}) {
		return "floor not run"
	}
	return "floor " + r.Floor.refusal()
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
