package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// ChainReport is the verdict on one chain.
type ChainReport struct {
	Chain   string
	Records int64
	OK      bool
	// For a failed chain: the first bad record (0 when it is missing), its
	// sequence number, and what is wrong.
	BadID   int64
	BadSeq  int64
	Problem string
}

// Report is the verdict on the whole trail.
type Report struct {
	OK              bool
	Chains          []ChainReport
	Unauthenticated int64
}

// Verify checks every chain: each record's MAC, each chain's sequence
// without gaps from its start (or its checkpoint), and every checkpoint's
// MAC. It names the first bad record of each chain that fails.
func (t *Trail) Verify(ctx context.Context) (Report, error) {
	key, err := t.keys.MACKey(ctx)
	if err != nil {
		return Report{}, err
	}
	defer clear(key)
	cps, err := t.store.AuditCheckpoints(ctx)
	if err != nil {
		return Report{}, err
	}
	type start struct {
		seq int64
		mac []byte
		bad string
	}
	starts := map[string]start{}
	for _, cp := range cps {
		st := start{seq: cp.Seq, mac: cp.LastMAC}
		if !hmac.Equal(cp.MAC, checkpointMAC(key, cp)) {
			st.bad = "its checkpoint fails authentication: edited or forged"
		}
		starts[ChainName(cp.ChainID, cp.Lane)] = st
	}

	rep := Report{OK: true}
	var (
		cur      *ChainReport
		expected int64
		prev     []byte
	)
	open := func(name string) {
		rep.Chains = append(rep.Chains, ChainReport{Chain: name, OK: true})
		cur = &rep.Chains[len(rep.Chains)-1]
		st, ok := starts[name]
		expected, prev = st.seq+1, st.mac
		if !ok {
			expected, prev = 1, make([]byte, sha256.Size)
		}
		if st.bad != "" {
			cur.OK, cur.BadSeq, cur.Problem = false, st.seq, st.bad
		}
		delete(starts, name)
	}
	fail := func(id, seq int64, problem string) {
		cur.OK, cur.BadID, cur.BadSeq, cur.Problem = false, id, seq, problem
	}
	err = t.store.ScanAudit(ctx, func(r Record) error {
		if r.Lane < 0 {
			rep.Unauthenticated++
			return nil
		}
		name := ChainName(r.ChainID, r.Lane)
		if cur == nil || cur.Chain != name {
			open(name)
		}
		cur.Records++
		if !cur.OK {
			return nil
		}
		switch {
		case r.Seq > expected:
			fail(r.ID, expected, fmt.Sprintf("records %d to %d are missing (deleted); the next is record %d", expected, r.Seq-1, r.ID))
		case r.Seq < expected:
			fail(r.ID, r.Seq, fmt.Sprintf("record %d repeats seq %d (inserted)", r.ID, r.Seq))
		case !hmac.Equal(r.MAC, recordMAC(key, prev, r)):
			fail(r.ID, r.Seq, fmt.Sprintf("record %d fails authentication: edited, forged or moved", r.ID))
		default:
			prev, expected = r.MAC, r.Seq+1
		}
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	// Checkpoints whose chain has no record left: fine (all pruned), unless
	// the checkpoint itself is bad.
	for name, st := range starts {
		if st.bad != "" {
			rep.Chains = append(rep.Chains, ChainReport{Chain: name, BadSeq: st.seq, Problem: st.bad})
		}
	}
	for _, c := range rep.Chains {
		rep.OK = rep.OK && c.OK
	}
	return rep, nil
}

// Prune deletes the records older than before, leaving a MACed checkpoint
// per chain so that the rest still verifies; rec, the record of the
// request asking, commits with the deletion. It returns how many records
// it deleted and how many checkpoints it wrote.
func (t *Trail) Prune(ctx context.Context, rec *Entry, before time.Time) (int64, int64, error) {
	// A checkpoint vouches for what it replaces: never certify a trail
	// that already fails verification.
	rep, err := t.Verify(ctx)
	if err != nil {
		return 0, 0, err
	}
	if !rep.OK {
		return 0, 0, fault.New(fault.FailedPrecondition,
			"the audit trail fails verification, so it is not pruned: run `spike audit verify` and investigate first")
	}
	key, err := t.keys.MACKey(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer clear(key)
	return t.store.PruneAudit(ctx, rec, before, func(chain []byte, lane int16, seq int64, mac []byte) ([]byte, error) {
		return checkpointMAC(key, Checkpoint{ChainID: chain, Lane: lane, Seq: seq, LastMAC: bytes.Clone(mac)}), nil
	})
}
