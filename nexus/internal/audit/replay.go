package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Replay is what a mutation needs to be applied at most once per
// Idempotency-Key: the caller's key and the hash of its request. The store
// keeps the mutation's first outcome under (Caller, Key), MACed with the
// audit key, and returns it to a retry instead of applying it again.
type Replay struct {
	Caller string
	Key    string
	// RequestHash identifies the request (procedure and message), keyed
	// with the audit key so that the stored hash reveals nothing about
	// what it hashes (a password, a secret value); a key used again for
	// another request is refused.
	RequestHash []byte
}

// SetReplay says that the request, to procedure with the encoded message
// request, carries the idempotency key of caller. Without the audit key
// (SPIKE sealed) the request hash is left empty, and keeping or checking
// an outcome fails.
func (e *Entry) SetReplay(caller, key, procedure string, request []byte) {
	r := Replay{Caller: caller, Key: key}
	if e.key != nil {
		h := hmac.New(sha256.New, e.key)
		for _, b := range [][]byte{[]byte("spike idempotent request v1"), []byte(procedure), request} {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
		r.RequestHash = h.Sum(nil)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.replay = &r
}

// Replay returns the request's idempotency key, if it has one.
func (e *Entry) Replay() (Replay, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.replay == nil {
		return Replay{}, false
	}
	return *e.replay, true
}

// errNoKey refuses to keep an outcome without the audit key: it could not
// be authenticated when read back.
var errNoKey = errors.New("no audit key to authenticate the outcome")

// OutcomeMAC authenticates a mutation's outcome for its key and request.
func (e *Entry) OutcomeMAC(outcome []byte) ([]byte, error) {
	r, ok := e.Replay()
	if !ok {
		return nil, errors.New("outcome MAC of a request without an idempotency key")
	}
	if e.keyErr != nil {
		return nil, e.keyErr
	}
	if e.key == nil {
		return nil, fault.Wrap(fault.Unavailable, errNoKey, "SPIKE is sealed")
	}
	return outcomeMAC(e.key, r, outcome), nil
}

// CheckOutcome checks a stored outcome found under the request's key: it
// must authenticate (else fault.DataLoss) and belong to the same request
// (else fault.Invalid: the key was used for another request). When it
// does, the record notes that the request was answered with it.
func (e *Entry) CheckOutcome(requestHash, outcome, mac []byte) error {
	r, ok := e.Replay()
	if !ok {
		return errors.New("stored outcome for a request without an idempotency key")
	}
	if e.keyErr != nil {
		return e.keyErr
	}
	if e.key == nil {
		return fault.Wrap(fault.Unavailable, errNoKey, "SPIKE is sealed")
	}
	stored := r
	stored.RequestHash = requestHash
	if !hmac.Equal(outcomeMAC(e.key, stored, outcome), mac) {
		return fault.New(fault.DataLoss,
			"the stored outcome of Idempotency-Key %q failed authentication (the database was changed outside SPIKE)", r.Key)
	}
	if !hmac.Equal(requestHash, r.RequestHash) {
		return fault.New(fault.Invalid,
			"Idempotency-Key %q was already used for a different request: use a new key for each request", r.Key)
	}
	// The request is answered with the first outcome: its record says so.
	e.mu.Lock()
	e.row.Reason = clean(e.row.Reason + "; replayed the first outcome of its Idempotency-Key")
	e.mu.Unlock()
	return nil
}

func outcomeMAC(key []byte, r Replay, outcome []byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, b := range [][]byte{[]byte("spike idempotent outcome v1"), []byte(r.Caller), []byte(r.Key), r.RequestHash, outcome} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return h.Sum(nil)
}
