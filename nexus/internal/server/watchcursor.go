package server

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// A stream without a cursor starts "from now": at the settled mark of a
// snapshot (every transaction below it had ended) and with that
// snapshot's startMark, which holds back the rows between the settled
// mark and the snapshot's Next of the transactions that had already ended
// when the stream opened. Those were written before the stream and a
// client that wrote one and then opened a watch must not receive it; the
// transactions the snapshot saw in flight commit afterwards and are sent.
type startMark struct {
	next     uint64
	inFlight []uint64 // ascending
}

// maxStartInFlight bounds the in-flight transactions a cursor carries
// (the snapshot's list is the whole cluster's). With more, the cursor's
// mark ends at the first one left out: below it the cursor holds back
// exactly what the stream did; from it up to the snapshot's Next, a
// stream resumed from that cursor also sends writes that ended just
// before the first stream opened (never fewer than it should).
const maxStartInFlight = 128

// maxCursorLen bounds a cursor before it is decoded.
const maxCursorLen = (cursorStartLen + 8*maxStartInFlight + 2) / 3 * 4

const (
	cursorLen      = 1 + 16 + 8 + 8
	cursorStartLen = cursorLen + 8
)

// startAt is where a stream from now begins, and its mark (nil when no
// transaction between the marks can hold back anything).
func startAt(st postgres.ChangeLog) (postgres.Position, *startMark) {
	pos := postgres.Position{XID: st.Settled}
	// A snapshot's xmin is its oldest in-flight transaction (or its xmax
	// when none runs). A state that says otherwise (read where the list is
	// not the whole truth, as on a standby) gets no mark: holding back on
	// it could leave a gap, sending too much only repeats.
	if st.Next <= st.Settled || len(st.InFlight) == 0 || st.InFlight[0] != st.Settled || !slices.IsSorted(st.InFlight) {
		return pos, nil
	}
	return pos, &startMark{next: st.Next, inFlight: slices.Clone(st.InFlight)}
}

// holds reports whether a row of transaction xid ended before the stream
// opened.
func (m *startMark) holds(xid uint64) bool {
	if m == nil || xid >= m.next {
		return false
	}
	_, running := slices.BinarySearch(m.inFlight, xid)
	return !running
}

// after returns the mark for a stream at p: nil once p has passed it, and
// only the in-flight transactions that p has not passed.
func (m *startMark) after(p postgres.Position) *startMark {
	if m == nil || p.XID >= m.next {
		return nil
	}
	i, _ := slices.BinarySearch(m.inFlight, p.XID)
	return &startMark{next: m.next, inFlight: m.inFlight[i:]}
}

// encodeCursor encodes a position of the change log with identity, and
// the stream's start mark while it matters.
func encodeCursor(identity string, p postgres.Position, m *startMark) string {
	id, _ := identityBytes(identity)
	m = m.after(p)
	if m != nil && len(m.inFlight) > maxStartInFlight {
		m = &startMark{next: m.inFlight[maxStartInFlight], inFlight: m.inFlight[:maxStartInFlight]}
	}
	version := byte(1)
	if m != nil {
		version = 2
	}
	b := make([]byte, 0, cursorStartLen+8*maxStartInFlight)
	b = append(b, version)
	b = append(b, id...)
	b = binary.BigEndian.AppendUint64(b, p.XID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.ID))
	if version == 2 {
		b = binary.BigEndian.AppendUint64(b, m.next)
		for _, x := range m.inFlight {
			b = binary.BigEndian.AppendUint64(b, x)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// openCursor decodes a cursor and checks that this database can resume
// from it without missing anything.
func openCursor(cur string, st postgres.ChangeLog) (postgres.Position, *startMark, error) {
	invalid := fault.New(fault.Invalid, "cursor: is not a cursor from WatchSecrets")
	if len(cur) > maxCursorLen {
		return postgres.Position{}, nil, invalid
	}
	b, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil || len(b) < cursorLen {
		return postgres.Position{}, nil, invalid
	}
	switch {
	case b[0] == 1 && len(b) == cursorLen:
	case b[0] == 2 && len(b) >= cursorStartLen && (len(b)-cursorStartLen)%8 == 0:
	default:
		return postgres.Position{}, nil, invalid
	}
	p := postgres.Position{XID: binary.BigEndian.Uint64(b[17:25]), ID: int64(binary.BigEndian.Uint64(b[25:33]))}
	var m *startMark
	if b[0] == 2 {
		m = &startMark{next: binary.BigEndian.Uint64(b[33:41])}
		for rest := b[41:]; len(rest) > 0; rest = rest[8:] {
			x := binary.BigEndian.Uint64(rest[:8])
			if x < p.XID || x >= m.next || len(m.inFlight) > 0 && x <= m.inFlight[len(m.inFlight)-1] {
				return postgres.Position{}, nil, invalid
			}
			m.inFlight = append(m.inFlight, x)
		}
		if p.XID >= m.next {
			return postgres.Position{}, nil, invalid
		}
	}
	id, err := identityBytes(st.Identity)
	if err != nil {
		return postgres.Position{}, nil, err
	}
	if string(b[1:17]) != string(id) || p.XID > st.Next || m != nil && m.next > st.Next {
		return postgres.Position{}, nil, fault.New(fault.OutOfRange,
			"cursor: comes from another database (restored or replaced since): start again without a cursor and read the secrets afresh")
	}
	if p.XID <= st.Pruned {
		return postgres.Position{}, nil, fault.New(fault.OutOfRange,
			"cursor: older than the retained changes (kept at least %s): start again without a cursor and read the secrets afresh", ChangeRetention)
	}
	return p, m, nil
}

func identityBytes(identity string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(identity, "-", ""))
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("change log identity %q is not a UUID", identity)
	}
	return b, nil
}
