package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// summary is what one cell measured: successful requests, their latency
// percentiles, and failures.
type summary struct {
	Ops    int
	Errors int
	// FirstError is the first failure's message, for the report.
	FirstError    string
	Elapsed       time.Duration
	P50, P90, P99 time.Duration
}

// runLoad calls op from workers goroutines, each calling again as soon as
// its call returns, until d has passed since the start; calls under way at
// that moment finish and count. Every call's duration is recorded.
func runLoad(ctx context.Context, workers int, d time.Duration, op func(context.Context) error) summary {
	type tally struct {
		latencies []time.Duration
		errors    int
		first     error
	}
	tallies := make([]tally, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			t := &tallies[w]
			for ctx.Err() == nil && time.Since(start) < d {
				t0 := time.Now()
				err := op(ctx)
				took := time.Since(t0)
				if err != nil {
					t.errors++
					if t.first == nil {
						t.first = err
					}
					continue
				}
				t.latencies = append(t.latencies, took)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	s := summary{Elapsed: elapsed}
	for _, t := range tallies {
		all = append(all, t.latencies...)
		s.Errors += t.errors
		if t.first != nil && s.FirstError == "" {
			s.FirstError = t.first.Error()
		}
	}
	slices.Sort(all)
	s.Ops = len(all)
	s.P50 = percentile(all, 50)
	s.P90 = percentile(all, 90)
	s.P99 = percentile(all, 99)
	return s
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value that at least p percent of the values do not exceed. It
// is 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// valid reports whether the cell's figures may be shown: it made requests
// and none failed. A cell with failures is not a measurement of SPIKE
// working.
func (s summary) valid() bool { return s.Errors == 0 && s.Ops > 0 }

// throughput is successful requests per second of the cell's wall time.
func (s summary) throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Ops) / s.Elapsed.Seconds()
}

// refusal says why a cell shows no figures; "" for a valid cell.
func (s summary) refusal() string {
	switch {
	case s.Errors == 1:
		return "n/a: 1 error"
	case s.Errors > 1:
		return fmt.Sprintf("n/a: %d errors", s.Errors)
	case s.Ops == 0:
		return "n/a: no requests"
	}
	return ""
}
