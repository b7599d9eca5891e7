package main

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		var d []time.Duration
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	hundred := make([]time.Duration, 100) // 1ms .. 100ms
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", ms(7), 50, 7 * time.Millisecond},
		{"one value p99", ms(7), 99, 7 * time.Millisecond},
		{"two values p50 is the lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two values p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"odd count p50 is the middle", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, 1 * time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p90", hundred, 90, 90 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"ten p99 is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"ten p90", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"ties", ms(1, 1, 1, 9), 75, 1 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		s       summary
		valid   bool
		refusal string
	}{
		{"no errors", summary{Ops: 10, Elapsed: time.Second}, true, ""},
		{"one error", summary{Ops: 10, Errors: 1, Elapsed: time.Second}, false, "n/a: 1 error"},
		{"many errors", summary{Ops: 10_000, Errors: 3, Elapsed: time.Second}, false, "n/a: 3 errors"},
		{"only errors", summary{Errors: 5, Elapsed: time.Second}, false, "n/a: 5 errors"},
		{"no requests", summary{Elapsed: time.Second}, false, "n/a: no requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.s.valid(); got != tc.valid {
				t.Errorf("valid() = %v, want %v", got, tc.valid)
			}
			if got := tc.s.refusal(); got != tc.refusal {
				t.Errorf("refusal() = %q, want %q", got, tc.refusal)
			}
		})
	}
}

// A cell with any failed request shows no throughput, however many
// succeeded: its figures are replaced by the error count.
func TestFiguresRefuseOnErrors(t *testing.T) {
	t.Parallel()
	ok := summary{Ops: 5000, Elapsed: 5 * time.Second, P50: time.Millisecond, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond}
	if diff := cmp.Diff([]string{"1000", "1.00 ms", "2.00 ms", "3.00 ms"}, figures(ok)); diff != "" {
		t.Errorf("figures of a clean cell (-want +got):\n%s", diff)
	}
	failed := ok
	failed.Errors = 2
	if diff := cmp.Diff([]string{"n/a: 2 errors", "n/a", "n/a", "n/a"}, figures(failed)); diff != "" {
		t.Errorf("figures of a failed cell (-want +got):\n%s", diff)
	}
	r := row{Op: "get", Ref: "SELECT", Concurrency: 16, SPIKE: failed, Raw: ok}
	if _, ok := r.ratio(); ok {
		t.Error("a row with a failed SPIKE cell has a ratio")
	}
}

func TestRunLoadCountsEveryCall(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	errBoom := errors.New("boom")
	op := func(context.Context) error {
		if calls.Add(1)%3 == 0 {
			return errBoom
		}
		return nil
	}
	s := runLoad(t.Context(), 4, 20*time.Millisecond, op)

	n := int(calls.Load())
	if s.Ops+s.Errors != n {
		t.Errorf("ops %d + errors %d != %d calls", s.Ops, s.Errors, n)
	}
	if s.Errors != n/3 {
		t.Errorf("errors = %d, want %d (every third of %d calls)", s.Errors, n/3, n)
	}
	if s.Errors > 0 && s.FirstError != "boom" {
		t.Errorf("first error = %q, want boom", s.FirstError)
	}
	if !slices.IsSorted([]time.Duration{s.P50, s.P90, s.P99}) {
		t.Errorf("percentiles out of order: p50 %v p90 %v p99 %v", s.P50, s.P90, s.P99)
	}
}

// A cancelled context stops the workers: a run never outlives its caller.
func TestRunLoadStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := runLoad(ctx, 8, time.Hour, func(context.Context) error { return nil })
	if s.Ops != 0 || s.Errors != 0 {
		t.Errorf("after cancel: ops %d, errors %d; want none", s.Ops, s.Errors)
	}
}
