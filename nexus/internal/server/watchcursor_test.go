package server

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

const testIdentity = "0123456789abcdef0123456789abcdef"

// A start mark holds back the transactions below its Next that were not
// in flight, and lets go of those it has passed.
func TestStartMark(t *testing.T) {
	t.Parallel()
	pos, m := startAt(postgres.ChangeLog{Settled: 10, Next: 20, InFlight: []uint64{10, 14}})
	if pos != (postgres.Position{XID: 10}) {
		t.Fatalf("start at %v, want the settled mark", pos)
	}
	for xid, want := range map[uint64]bool{10: false, 11: true, 13: true, 14: false, 19: true, 20: false, 25: false} {
		if got := m.holds(xid); got != want {
			t.Errorf("holds(%d) = %t, want %t", xid, got, want)
		}
	}
	if got := m.after(postgres.Position{XID: 12, ID: 3}); got == nil || !cmp.Equal(got.inFlight, []uint64{14}) || !got.holds(13) {
		t.Errorf("after 12: %+v, want only 14 in flight", got)
	}
	if got := m.after(postgres.Position{XID: 20}); got != nil {
		t.Errorf("after the mark: %+v, want none", got)
	}
	for _, st := range []postgres.ChangeLog{
		{Settled: 7, Next: 7},                               // nothing between the marks
		{Settled: 7, Next: 9},                               // nothing in flight below Next: not a primary's snapshot
		{Settled: 7, Next: 9, InFlight: []uint64{8}},        // xmin is not the oldest in flight
		{Settled: 7, Next: 12, InFlight: []uint64{7, 9, 8}}, // out of order
	} {
		if _, m := startAt(st); m != nil || m.holds(8) {
			t.Errorf("state %+v: mark %+v, want none", st, m)
		}
	}
}

// Cursors carry the position and, while it matters, the start mark; what
// is not a cursor of this database is refused.
func TestCursors(t *testing.T) {
	t.Parallel()
	st := postgres.ChangeLog{Identity: testIdentity, Settled: 30, Next: 40, Pruned: 2}
	mark := &startMark{next: 25, inFlight: []uint64{12, 17}}
	for _, tc := range []struct {
		name string
		pos  postgres.Position
		mark *startMark
		want *startMark
	}{
		{"plain", postgres.Position{XID: 12, ID: 5}, nil, nil},
		{"with a mark", postgres.Position{XID: 12, ID: 5}, mark, mark},
		{"past an in-flight one", postgres.Position{XID: 13}, mark, &startMark{next: 25, inFlight: []uint64{17}}},
		{"past the mark", postgres.Position{XID: 25}, mark, nil},
	} {
		cur := encodeCursor(testIdentity, tc.pos, tc.mark)
		pos, m, err := openCursor(cur, st)
		if err != nil || pos != tc.pos || !cmp.Equal(m, tc.want, cmp.AllowUnexported(startMark{})) {
			t.Errorf("%s: openCursor = %v, %+v, %v; want %v, %+v", tc.name, pos, m, err, tc.pos, tc.want)
		}
	}

	many := &startMark{next: 1000}
	for x := uint64(100); len(many.inFlight) <= maxStartInFlight; x += 2 {
		many.inFlight = append(many.inFlight, x)
	}
	_, m, err := openCursor(encodeCursor(testIdentity, postgres.Position{XID: 100}, many), postgres.ChangeLog{Identity: testIdentity, Next: 2000})
	cut := many.inFlight[maxStartInFlight]
	if err != nil || m == nil || m.next != cut || len(m.inFlight) != maxStartInFlight {
		t.Fatalf("too many in flight: mark %+v, %v; want one cut at %d", m, err, cut)
	}
	// Cut: exact below the first one left out, nothing held from it on.
	for xid, want := range map[uint64]bool{101: true, cut - 1: true, 100: false, cut: false, cut + 1: false, 999: false} {
		if got := m.holds(xid); got != want {
			t.Errorf("cut mark: holds(%d) = %t, want %t", xid, got, want)
		}
	}
	long := encodeCursor(testIdentity, postgres.Position{XID: 100}, &startMark{next: 1000, inFlight: many.inFlight[:maxStartInFlight]})
	if len(long) > maxCursorLen {
		t.Errorf("a cursor with %d in flight is %d long, over maxCursorLen %d", maxStartInFlight, len(long), maxCursorLen)
	}

	raw := func(b ...[]byte) string {
		var all []byte
		for _, p := range b {
			all = append(all, p...)
		}
		return base64.RawURLEncoding.EncodeToString(all)
	}
	id, _ := identityBytes(testIdentity)
	u64 := func(x uint64) []byte {
		return []byte{byte(x >> 56), byte(x >> 48), byte(x >> 40), byte(x >> 32), byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}
	}
	other, _ := identityBytes(strings.Repeat("f", 32))
	for _, tc := range []struct {
		name, cur string
		code      fault.Code
	}{
		{"not base64", "!!", fault.Invalid},
		{"too long", strings.Repeat("A", maxCursorLen+1), fault.Invalid},
		{"short", raw([]byte{1}, id), fault.Invalid},
		{"unknown version", raw([]byte{3}, id, u64(12), u64(0)), fault.Invalid},
		{"plain with a tail", raw([]byte{1}, id, u64(12), u64(0), u64(25)), fault.Invalid},
		{"mark not after the position", raw([]byte{2}, id, u64(12), u64(0), u64(12)), fault.Invalid},
		{"in flight past the mark", raw([]byte{2}, id, u64(12), u64(0), u64(25), u64(25)), fault.Invalid},
		{"in flight before the position", raw([]byte{2}, id, u64(12), u64(0), u64(25), u64(11)), fault.Invalid},
		{"in flight out of order", raw([]byte{2}, id, u64(12), u64(0), u64(25), u64(17), u64(14)), fault.Invalid},
		{"another database", raw([]byte{1}, other, u64(12), u64(0)), fault.OutOfRange},
		{"from the future", raw([]byte{1}, id, u64(41), u64(0)), fault.OutOfRange},
		{"a mark from the future", raw([]byte{2}, id, u64(12), u64(0), u64(41)), fault.OutOfRange},
		{"pruned", raw([]byte{1}, id, u64(2), u64(0)), fault.OutOfRange},
	} {
		if _, _, err := openCursor(tc.cur, st); fault.CodeOf(err) != tc.code {
			t.Errorf("%s: openCursor = %v, want a %v fault", tc.name, err, tc.code)
		}
	}
}
