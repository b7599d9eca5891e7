package postgres

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// The cached text of a write statement is the text built for its shape,
// and each write still sends its own arguments.
func TestWriteStatementCache(t *testing.T) {
	rec := []audit.Record{{Caller: "a", At: time.Unix(1, 0)}}
	kept := &keptOutcome{outcome: []byte("o"), mac: []byte("m")}
	writes := []struct {
		w       secret.Write
		pruned  []int64
		records []audit.Record
		kept    *keptOutcome
	}{
		{secret.Write{Create: true, Insert: &secret.Row{Version: 1}}, nil, rec, kept},
		{secret.Write{Insert: &secret.Row{Version: 2}, Deleted: []int64{1}}, []int64{1}, rec, nil},
		{secret.Write{Undeleted: []int64{1}, Destroyed: []int64{2}, Reseal: []secret.Row{{Version: 3}}}, nil, nil, kept},
	}
	for i, tc := range writes {
		// What the text is, built fresh with numbered placeholders.
		var want []any
		fresh := buildWriteStatement("p", tc.w, tc.pruned, tc.records, tc.kept, nil, func() int { return len(want) }, func(v any, typ string) string {
			want = append(want, v)
			return "$" + strconv.Itoa(len(want)) + "::" + typ
		})
		first, args1 := writeSecretStatement("p", tc.w, tc.pruned, tc.records, tc.kept, nil)
		if first != fresh {
			t.Errorf("write %d: the statement's text is not the one built for its shape:\n%s\nwant:\n%s", i, first, fresh)
		}
		second, args2 := writeSecretStatement("q", tc.w, tc.pruned, tc.records, tc.kept, nil)
		if first != second {
			t.Errorf("write %d: the cached text differs from the one built first", i)
		}
		if len(args1) != len(want) || len(args2) != len(want) {
			t.Errorf("write %d: %d and %d arguments, want %d", i, len(args1), len(args2), len(want))
		}
		if args2[0] != "q" || args1[0] != "p" {
			t.Errorf("write %d: the path arguments are %v and %v, want p and q", i, args1[0], args2[0])
		}
		if diff := gocmp.Diff(args1[1:], args2[1:]); diff != "" {
			t.Errorf("write %d: the other arguments differ (-first +second):\n%s", i, diff)
		}
	}
}

// Audit rows go in as VALUES up to maxValuesRows and as arrays beyond;
// either way every field of every row is stored as given.
func TestAuditInsertForms(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	at := time.Date(2026, 12, 4, 10, 0, 0, 123456000, time.UTC)
	seq := int64(0)
	for _, n := range []int{1, 2, maxValuesRows, maxValuesRows + 1, 40} {
		sql, _ := auditColumns(make([]audit.Record, n), 1)
		if values := !strings.Contains(sql, "unnest"); values != (n <= maxValuesRows) {
			t.Errorf("%d rows: inserted as VALUES = %v, want %v", n, values, n <= maxValuesRows)
		}
		chain := []byte(fmt.Sprintf("chain-%02d", n))
		want := make([]audit.Record, n)
		for i := range want {
			seq++
			want[i] = audit.Record{
				ChainID: chain, Lane: int16(i % 3), Seq: seq, At: at.Add(time.Duration(seq) * time.Second),
				RequestID: fmt.Sprintf("r%d", seq), Caller: "spiffe://t/c" + strconv.Itoa(i), Peer: "127.0.0.1:1",
				Procedure: "/p.S/M", Target: "t/" + strconv.Itoa(i), Decision: "allow", Reason: "why " + strconv.Itoa(i),
				Code: "ok", DurationUS: seq * 7, MAC: []byte{byte(i), 1, 2},
			}
		}
		want[n-1].MAC = nil // the unauthenticated lane's records carry none
		if err := s.InsertAudit(ctx, want); err != nil {
			t.Fatalf("%d rows: %v", n, err)
		}
		got, _, err := s.AuditRecords(ctx, audit.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var mine []audit.Record
		for _, r := range got {
			if string(r.ChainID) == string(chain) {
				r.At = r.At.UTC()
				mine = append(mine, r)
			}
		}
		slices.SortFunc(mine, func(a, b audit.Record) int { return cmp.Compare(a.Seq, b.Seq) })
		// Rows take their ids in the order given.
		for i := range mine {
			if i > 0 && mine[i].ID <= mine[i-1].ID {
				t.Errorf("%d rows: row %d has id %d, after %d", n, i, mine[i].ID, mine[i-1].ID)
			}
			mine[i].ID = 0
		}
		if diff := gocmp.Diff(want, mine); diff != "" {
			t.Errorf("%d rows stored (-want +got):\n%s", n, diff)
		}
	}
}
