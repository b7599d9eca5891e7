package access

import (
	"sync"
	"time"
)

// Login backoff: after a failed login a caller must wait, doubling with
// each further failure, before the next attempt is even considered; and a
// caller has at most one attempt in flight at a time.
const (
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
	// backoffForget is how long after its last failure a caller's record
	// is forgotten: its next failure waits backoffBase again, and the
	// record may be dropped so that the map cannot grow without bound.
	backoffForget = time.Hour
	maxTracked    = 10000
)

// Backoff slows failed logins per caller. It lives in one Nexus process;
// each replica slows the callers it sees.
type Backoff struct {
	now func() time.Time

	mu      sync.Mutex
	callers map[string]*attempts
}

// attempts is what Backoff knows of one caller.
type attempts struct {
	failures int
	until    time.Time // no new attempt before this
	last     time.Time // last failure
	inFlight bool
}

// NewBackoff returns an empty Backoff.
func NewBackoff() *Backoff {
	return newBackoff(time.Now)
}

func newBackoff(now func() time.Time) *Backoff {
	return &Backoff{now: now, callers: make(map[string]*attempts)}
}

// Begin reserves a login attempt for caller. When caller must still wait
// after failed attempts, or already has an attempt in flight, it returns
// how long to wait (more than 0) and a nil done. Otherwise the attempt is
// in flight until done is called, exactly once, with its outcome: success
// forgets the caller's failures, failure counts one more and doubles the
// wait. Checking and reserving are one step, so parallel attempts cannot
// all pass before the first failure is counted.
func (b *Backoff) Begin(caller string) (done func(success bool), wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	a, ok := b.callers[caller]
	if !ok {
		if len(b.callers) >= maxTracked {
			b.forgetLocked(now)
		}
		a = &attempts{}
		b.callers[caller] = a
	}
	switch {
	case a.inFlight:
		return nil, max(a.until.Sub(now), backoffBase)
	case a.until.After(now):
		return nil, a.until.Sub(now)
	}
	if a.failures > 0 && now.Sub(a.last) > backoffForget {
		a.failures = 0
	}
	a.inFlight = true
	var once sync.Once
	return func(success bool) { once.Do(func() { b.finish(caller, a, success) }) }, 0
}

func (b *Backoff) finish(caller string, a *attempts, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a.inFlight = false
	if success {
		if b.callers[caller] == a {
			delete(b.callers, caller)
		}
		return
	}
	now := b.now()
	a.failures++
	wait := backoffBase << min(a.failures-1, 20)
	a.until, a.last = now.Add(min(wait, backoffMax)), now
}

// forgetLocked drops the records of callers with no attempt in flight
// whose last failure is older than backoffForget.
func (b *Backoff) forgetLocked(now time.Time) {
	for c, a := range b.callers {
		if !a.inFlight && now.Sub(a.last) > backoffForget {
			delete(b.callers, c)
		}
	}
}
