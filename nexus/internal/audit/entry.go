// Package audit keeps SPIKE's audit trail: one record per request, allowed
// or denied. A mutation's record commits in the mutation's own transaction;
// every other record is written in batches (group commit) and committed
// before the response leaves Nexus. Records are chained with HMAC-SHA256
// under a key that only SPIKE can use (a data key wrapped by Keeper under
// the root key), so that a record edited, deleted, inserted or reordered in
// the database is found by Verify.
package audit

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Entry is the audit record of one request in the making. A request that
// changes anything hands its Entry to the store method that makes the
// change, which writes the record in the change's own transaction (Rows,
// then Done); every other record is written by Trail.Finish. Its methods
// are safe for concurrent use.
type Entry struct {
	trail *Trail
	start time.Time

	mu       sync.Mutex
	row      Record
	decided  bool
	recorded bool
	// pending is the record written in a transaction that has not yet
	// committed (or rolled back).
	pending *chained
	// key is the MAC key, fetched when the request began: a mutation's
	// record is chained inside its transaction, which must not wait for
	// another database connection.
	key []byte
	// keyErr says why there is no key although SPIKE is unsealed: every
	// write of this record then fails (fail closed).
	keyErr error
	// replay is the request's idempotency key, if any.
	replay *Replay
}

// Begin starts the record of a request.
func (t *Trail) Begin(ctx context.Context, requestID, caller, peer, procedure string) *Entry {
	now := time.Now()
	key, keyErr := t.macKey(ctx)
	return &Entry{trail: t, start: now, key: key, keyErr: keyErr, row: Record{
		ChainID:   t.chainID[:],
		At:        now.UTC().Truncate(time.Microsecond),
		RequestID: requestID,
		Caller:    caller,
		Peer:      peer,
		Procedure: procedure,
	}}
}

// SetTarget says what the request was about (a path, a policy name, a
// token id). Never a secret.
func (e *Entry) SetTarget(target string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.row.Target = clean(target)
}

// Allow records that authorization let the request through, and why.
func (e *Entry) Allow(reason string) { e.decide("allow", reason) }

// Deny records that authorization refused the request, and why.
func (e *Entry) Deny(reason string) { e.decide("deny", reason) }

func (e *Entry) decide(decision, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.row.Decision, e.row.Reason, e.decided = decision, clean(reason), true
}

// Recorded reports whether the record is committed.
func (e *Entry) Recorded() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.recorded
}

// final returns the row as it stands, with the result code and duration.
func (e *Entry) final(code string) Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.row
	if !e.decided {
		r.Decision, r.Reason = "deny", "refused before authorization: "+code
	}
	r.Code = code
	r.DurationUS = time.Since(e.start).Microseconds()
	return r
}

// Rows returns the record, given its place in a chain, for the store to
// write in the transaction of the request's mutation just before it
// commits; the store then calls Done with the outcome. Only the first
// mutation of a request carries the record: once it is written, Rows
// returns nothing. An error means the record cannot be written, and the
// mutation must not commit (fail closed).
func (e *Entry) Rows(ctx context.Context) ([]Record, error) {
	if e.Recorded() {
		return nil, nil
	}
	if e.keyErr != nil {
		return nil, e.keyErr
	}
	c, err := e.trail.chain(ctx, e.key, []Record{e.final("ok")})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.pending = &c
	e.mu.Unlock()
	return c.rows, nil
}

// Done learns whether the transaction that carried Rows committed; false
// means it may or may not have (the connection broke during the commit).
func (e *Entry) Done(committed bool) {
	e.settle(outcomeOf(committed))
}

// Aborted learns that the transaction that carried Rows certainly did not
// commit (the database refused a statement, or nothing was sent): its
// chain goes on from where it was.
func (e *Entry) Aborted() { e.settle(aborted) }

func (e *Entry) settle(o outcome) {
	e.mu.Lock()
	c := e.pending
	e.pending = nil
	if c != nil && o == committed {
		e.recorded = true
	}
	e.mu.Unlock()
	if c != nil {
		e.trail.settle(*c, o)
	}
}

// outcome is how the transaction that carried a record ended.
type outcome int

const (
	committed outcome = iota
	aborted
	uncertain
)

func outcomeOf(ok bool) outcome {
	if ok {
		return committed
	}
	return uncertain
}

// maxField bounds each text field of a record: a request may carry up to
// 1 MiB of garbage in a path, and the trail must not grow with it.
const maxField = 600

// clean makes s storable and readable: valid UTF-8 without NUL or other
// control characters (escaped), at most maxField bytes.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		q := strconv.Quote(s)
		s = q[1 : len(q)-1]
	}
	if len(s) > maxField {
		cut := maxField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
