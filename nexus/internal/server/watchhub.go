package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// WatchConfig bounds WatchSecrets. Zero values take the defaults.
type WatchConfig struct {
	// PollInterval is how often this Nexus reads the change log while
	// anyone watches (its own commits wake it at once).
	PollInterval time.Duration
	// Heartbeat is how often a quiet stream gets a response without
	// events, carrying its cursor forward.
	Heartbeat time.Duration
	// IdleTimeout ends a stream that delivered no event for this long
	// (the client resumes with its cursor).
	IdleTimeout time.Duration
	// MaxStreamsPerCaller and MaxStreams bound the open streams of one
	// SPIFFE ID and of this Nexus.
	MaxStreamsPerCaller, MaxStreams int
}

// Defaults of WatchConfig.
const (
	DefaultWatchPollInterval        = 200 * time.Millisecond
	DefaultWatchHeartbeat           = 15 * time.Second
	DefaultWatchIdleTimeout         = 30 * time.Minute
	DefaultWatchMaxStreamsPerCaller = 8
	DefaultWatchMaxStreams          = 1024
	// ChangeRetention is how long the change log keeps a change at
	// least, unless configured longer: a watcher may resume within it.
	ChangeRetention = 24 * time.Hour
)

func (c WatchConfig) withDefaults() WatchConfig {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultWatchPollInterval
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultWatchHeartbeat
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultWatchIdleTimeout
	}
	if c.MaxStreamsPerCaller <= 0 {
		c.MaxStreamsPerCaller = DefaultWatchMaxStreamsPerCaller
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultWatchMaxStreams
	}
	return c
}

// changeLog is what the hub and the streams read of the database.
type changeLog interface {
	Changes(ctx context.Context, from postgres.Position, limit int) ([]postgres.ChangeRow, uint64, error)
	ChangeLogState(ctx context.Context) (postgres.ChangeLog, error)
}

// Bounds of the hub's buffer and reads.
const (
	// hubPage is how many rows one poll reads at most (it reads again at
	// once when there are more).
	hubPage = 1000
	// hubBuffer is how many recent rows the hub keeps for the streams; a
	// stream further behind reads the database itself.
	hubBuffer = 10000
	// identityCheck is how often the hub checks that the database is
	// still the one its buffer came from.
	identityCheck = 10 * time.Second
)

// watchHub is the one poller of this Nexus: while any stream is open it
// reads the change log's new rows every PollInterval (or at once when this
// process committed a change) and keeps the recent ones for every stream,
// so that the database is read once per poll however many watch.
type watchHub struct {
	log      changeLog
	cfg      WatchConfig
	logger   *slog.Logger
	kickCh   chan struct{}
	mu       sync.Mutex
	ready    bool
	identity string
	// buf holds every row after start up to pos, in order.
	start, pos postgres.Position
	buf        []postgres.ChangeRow
	// wake is closed when pos moves (or the hub resets), then replaced.
	wake chan struct{}
	// epoch counts resets: a stream reading the buffer of an earlier
	// epoch ends.
	epoch   int
	streams map[string]int
	total   int
	checked time.Time
}

func newWatchHub(log changeLog, cfg WatchConfig, logger *slog.Logger) *watchHub {
	return &watchHub{log: log, cfg: cfg.withDefaults(), logger: logger, kickCh: make(chan struct{}, 1),
		wake: make(chan struct{}), streams: map[string]int{}}
}

// kick asks for a poll now: this process committed a change. It never
// blocks (nil hub: nothing).
func (h *watchHub) kick() {
	if h == nil {
		return
	}
	select {
	case h.kickCh <- struct{}{}:
	default:
	}
}

// join counts a new stream of caller, refusing it beyond the limits; leave
// undoes it.
func (h *watchHub) join(caller string) (leave func(), err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[caller] >= h.cfg.MaxStreamsPerCaller {
		return nil, fault.New(fault.TooMany, "%s has %d watch streams open on this Nexus, the most allowed: close one first", caller, h.cfg.MaxStreamsPerCaller)
	}
	if h.total >= h.cfg.MaxStreams {
		return nil, fault.New(fault.TooMany, "this Nexus serves %d watch streams, the most allowed: try again later or another replica", h.cfg.MaxStreams)
	}
	h.streams[caller]++
	h.total++
	h.kick()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.streams[caller]--; h.streams[caller] == 0 {
				delete(h.streams, caller)
			}
			h.total--
		})
	}, nil
}

// Run polls until ctx is done.
func (h *watchHub) Run(ctx context.Context) {
	tick := time.NewTicker(h.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-h.kickCh:
		}
		h.poll(ctx)
	}
}

// poll reads what is new, if anyone watches; with nobody watching it
// forgets its buffer (the next stream starts it afresh).
func (h *watchHub) poll(ctx context.Context) {
	h.mu.Lock()
	watching, ready, pos, stale := h.total > 0, h.ready, h.pos, time.Since(h.checked) > identityCheck
	h.mu.Unlock()
	if !watching {
		if ready {
			h.reset("")
		}
		return
	}
	if !ready || stale {
		st, err := h.log.ChangeLogState(ctx)
		if err != nil {
			h.failed(ctx, err)
			return
		}
		h.mu.Lock()
		h.checked = time.Now()
		changed := h.ready && st.Identity != h.identity
		h.mu.Unlock()
		if changed {
			h.logger.Warn("the change log's identity changed (another database): watch streams end")
			h.reset("")
			return
		}
		if !ready {
			h.reset(st.Identity)
			h.mu.Lock()
			h.start, h.pos, h.ready = postgres.Position{XID: st.Settled}, postgres.Position{XID: st.Settled}, true
			h.advanced()
			h.mu.Unlock()
			return
		}
	}
	for range hubBuffer / hubPage {
		rows, settled, err := h.log.Changes(ctx, pos, hubPage)
		if err != nil {
			h.failed(ctx, err)
			return
		}
		next := pos
		if len(rows) > 0 {
			next = rows[len(rows)-1].Position
		}
		if len(rows) < hubPage {
			next = later(next, postgres.Position{XID: settled})
		}
		h.mu.Lock()
		if h.pos != pos { // reset meanwhile
			h.mu.Unlock()
			return
		}
		h.buf = append(h.buf, rows...)
		if over := len(h.buf) - hubBuffer; over > 0 {
			h.start = h.buf[over-1].Position
			h.buf = slices.Delete(h.buf, 0, over)
		}
		moved := h.pos != next
		h.pos = next
		if moved {
			h.advanced()
		}
		h.mu.Unlock()
		if len(rows) < hubPage {
			return
		}
		pos = next
	}
}

func (h *watchHub) failed(ctx context.Context, err error) {
	if ctx.Err() == nil {
		h.logger.Warn("reading the change log failed; retrying", "error", err.Error())
	}
}

// advanced wakes the streams; h.mu is held.
func (h *watchHub) advanced() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// reset forgets the buffer: streams reading it end (a new epoch).
func (h *watchHub) reset(identity string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready, h.identity, h.buf = false, identity, nil
	h.start, h.pos = postgres.Position{}, postgres.Position{}
	h.epoch++
	h.advanced()
}

// hubRead is what a stream gets from the hub.
type hubRead struct {
	// ok: the rows after the stream's position are in the buffer (rows,
	// next); otherwise the stream reads the database itself, or waits
	// (hub not ready: wait).
	ok   bool
	rows []postgres.ChangeRow
	next postgres.Position
	// more: rows are left after next in the buffer.
	more bool
	wait <-chan struct{}
	// epoch and identity of the buffer.
	epoch    int
	identity string
	ready    bool
}

// read returns at most limit buffered rows after pos.
func (h *watchHub) read(pos postgres.Position, limit int) hubRead {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := hubRead{wait: h.wake, epoch: h.epoch, identity: h.identity, ready: h.ready, next: pos}
	if !h.ready || pos.Before(h.start) {
		return r
	}
	r.ok = true
	if !pos.Before(h.pos) {
		return r // caught up (or ahead: a position from a fresher snapshot)
	}
	i, _ := slices.BinarySearchFunc(h.buf, pos, func(row postgres.ChangeRow, p postgres.Position) int {
		switch {
		case row.Position.Before(p):
			return -1
		case p.Before(row.Position):
			return 1
		}
		return 0
	})
	if i < len(h.buf) && h.buf[i].Position == pos {
		i++
	}
	end := min(len(h.buf), i+limit)
	r.rows = slices.Clone(h.buf[i:end])
	r.more = end < len(h.buf)
	if r.more {
		r.next = h.buf[end-1].Position
	} else {
		r.next = h.pos
	}
	return r
}

// later returns the later of two positions.
func later(a, b postgres.Position) postgres.Position {
	if a.Before(b) {
		return b
	}
	return a
}
