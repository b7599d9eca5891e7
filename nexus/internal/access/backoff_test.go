package access

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a fake time source for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// begin starts an attempt that must be allowed.
func begin(t *testing.T, b *Backoff, caller string) func(bool) {
	t.Helper()
	done, wait := b.Begin(caller)
	if wait != 0 || done == nil {
		t.Fatalf("Begin(%s) = wait %s, done %v; want an attempt", caller, wait, done != nil)
	}
	return done
}

// refused checks that caller must wait exactly want.
func refused(t *testing.T, b *Backoff, caller string, want time.Duration) {
	t.Helper()
	done, wait := b.Begin(caller)
	if done != nil || wait != want {
		t.Fatalf("Begin(%s) = wait %s, done %v; want wait %s and no attempt", caller, wait, done != nil, want)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := newBackoff(c.now)
	want := time.Second
	for range 12 {
		begin(t, b, "admin")(false)
		refused(t, b, "admin", want)
		c.advance(want - time.Millisecond)
		refused(t, b, "admin", time.Millisecond)
		c.advance(time.Millisecond)
		want = min(2*want, backoffMax)
	}
	if want != backoffMax {
		t.Fatalf("after 12 failures the wait is %s, want the cap %s", want, backoffMax)
	}
	// Another caller is not slowed.
	begin(t, b, "other")(true)
}

func TestBackoffSuccessResets(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := newBackoff(c.now)
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		begin(t, b, "admin")(false)
		c.advance(d)
	}
	begin(t, b, "admin")(true)
	// Nothing to wait for, and the next failure starts from 1s again.
	begin(t, b, "admin")(false)
	refused(t, b, "admin", time.Second)
	if len(b.callers) != 1 {
		t.Errorf("tracking %d callers, want 1", len(b.callers))
	}
}

func TestBackoffOneAttemptInFlight(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := newBackoff(c.now)
	done := begin(t, b, "admin")
	// While the first attempt runs, no other is admitted: parallel guesses
	// cannot all pass before the first failure counts.
	for range 5 {
		refused(t, b, "admin", backoffBase)
	}
	begin(t, b, "other")(false)
	done(false)
	done(true) // a second call is ignored
	refused(t, b, "admin", time.Second)
	c.advance(time.Second)
	done = begin(t, b, "admin")
	// In flight after failures: the longer of the two waits.
	refused(t, b, "admin", backoffBase)
	done(false)
	refused(t, b, "admin", 2*time.Second)
}

func TestBackoffParallelBegin(t *testing.T) {
	t.Parallel()
	b := newBackoff(newClock().now) // the clock stands still
	const n = 64
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range n {
		wg.Go(func() {
			if done, _ := b.Begin("admin"); done != nil {
				mu.Lock()
				allowed++
				mu.Unlock()
				done(false)
			}
		})
	}
	wg.Wait()
	// Checking and reserving are one step: of parallel attempts exactly
	// one runs, and after its failure the backoff refuses the rest.
	if allowed != 1 || b.callers["admin"].failures != 1 {
		t.Errorf("allowed %d attempts with %d failures counted, want 1 and 1", allowed, b.callers["admin"].failures)
	}
}

func TestBackoffForgets(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := newBackoff(c.now)
	for range 5 {
		begin(t, b, "admin")(false)
		c.advance(time.Minute)
	}
	// An hour after the last failure, the count starts again.
	c.advance(backoffForget)
	begin(t, b, "admin")(false)
	refused(t, b, "admin", time.Second)

	// Old records are dropped when the map is full; recent ones and
	// attempts in flight stay.
	c.advance(time.Second)
	inFlight := begin(t, b, "admin")
	for i := range maxTracked - 2 {
		begin(t, b, fmt.Sprintf("old-%d", i))(false)
	}
	begin(t, b, "recent")(false)
	if len(b.callers) != maxTracked {
		t.Fatalf("tracking %d callers, want %d", len(b.callers), maxTracked)
	}
	c.advance(backoffForget - time.Minute)
	begin(t, b, "recent-2")(false)
	c.advance(2 * time.Minute)
	begin(t, b, "new")(false)
	if _, ok := b.callers["old-0"]; ok {
		t.Error("an old record survived a full map")
	}
	for _, c := range []string{"admin", "recent-2", "new"} {
		if _, ok := b.callers[c]; !ok {
			t.Errorf("record of %s dropped", c)
		}
	}
	inFlight(false)
	if got := b.callers["admin"].failures; got != 2 {
		t.Errorf("admin failures = %d, want 2", got)
	}
}
