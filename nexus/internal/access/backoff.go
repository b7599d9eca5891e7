package access

import (
	"sync"
	"time"
)

// Login backoff: after a failed login a caller must wait, doubling with
// each further failure, before the next attempt is even considered.
const (
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
	// backoffForget drops a caller's record this long after its last
	// failure, so the map cannot grow without bound.
	backoffForget = time.Hour
	maxTracked    = 10000
)

// Backoff slows failed logins per caller. It lives in one Nexus process;
// each replica slows the callers it sees.
type Backoff struct {
	now func() time.Time

	mu      sync.Mutex
	callers map[string]*failures
}

type failures struct {
	count int
	until time.Time
	last  time.Time
}

// NewBackoff returns an empty Backoff.
func NewBackoff() *Backoff {
	return &Backoff{now: time.Now, callers: make(map[string]*failures)}
}

// Wait returns how long caller must still wait before trying again, or 0.
func (b *Backoff) Wait(caller string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.callers[caller]
	if !ok {
		return 0
	}
	return max(f.until.Sub(b.now()), 0)
}

// Fail records a failed attempt.
func (b *Backoff) Fail(caller string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if len(b.callers) >= maxTracked {
		for c, f := range b.callers {
			if now.Sub(f.last) > backoffForget {
				delete(b.callers, c)
			}
		}
	}
	f, ok := b.callers[caller]
	if !ok {
		f = &failures{}
		b.callers[caller] = f
	}
	f.count++
	wait := backoffBase << min(f.count-1, 20)
	f.until, f.last = now.Add(min(wait, backoffMax)), now
}

// Succeed forgets caller's failures.
func (b *Backoff) Succeed(caller string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.callers, caller)
}
