package postgres

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
		records []audit.Record
		kept    *keptOutcome
	}{
		{secret.Write{Create: true, Insert: &secret.Row{Version: 1}}, rec, kept},
		{secret.Write{Insert: &secret.Row{Version: 2}, Deleted: []int64{1}}, rec, nil},
		{secret.Write{Undeleted: []int64{1}, Destroyed: []int64{2}, Reseal: []secret.Row{{Version: 3}}}, nil, kept},
	}
	for i, tc := range writes {
		// What the text is, built fresh with numbered placeholders.
		var want []any
		fresh := buildWriteStatement("p", tc.w, tc.records, tc.kept, nil, func() int { return len(want) }, func(v any, typ string) string {
			want = append(want, v)
			return "$" + strconv.Itoa(len(want)) + "::" + typ
		})
		first, args1 := writeSecretStatement("p", tc.w, tc.records, tc.kept, nil)
		if first != fresh {
			t.Errorf("write %d: the statement's text is not the one built for its shape:\n%s\nwant:\n%s", i, first, fresh)
		}
		second, args2 := writeSecretStatement("q", tc.w, tc.records, tc.kept, nil)
		if first != second {
			t.Errorf("write %d: the cached text differs from the one built first", i)
		}
		if len(args1) != len(want) || len(args2) != len(want) {
			t.Errorf("write %d: %d and %d arguments, want %d", i, len(args1), len(args2), len(want))
		}
		if args2[0] != "q" || args1[0] != "p" {
			t.Errorf("write %d: the path arguments are %v and %v, want p and q", i, args1[0], args2[0])
		}
		if diff := cmp.Diff(args1[1:], args2[1:]); diff != "" {
			t.Errorf("write %d: the other arguments differ (-first +second):\n%s", i, diff)
		}
	}
}
