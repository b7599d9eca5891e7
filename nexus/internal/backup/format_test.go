package backup_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	backupv1 "github.com/spike-dev/spike/proto/spike/backup/v1"

	"github.com/spike-dev/spike/nexus/internal/backup"
	"github.com/spike-dev/spike/nexus/internal/fault"
)

var auditKey = bytes.Repeat([]byte{7}, 32)

func row(t *testing.T, vals ...any) *backupv1.Row {
	t.Helper()
	r := &backupv1.Row{}
	for _, v := range vals {
		bv, err := backup.Value(v)
		if err != nil {
			t.Fatal(err)
		}
		r.Values = append(r.Values, bv)
	}
	return r
}

// sample writes a small backup: two tables with rows, one empty.
func sample(t *testing.T, key []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := backup.NewWriter(&buf)
	h := &backupv1.Header{
		SchemaVersion: 8, CreatedAt: timestamppb.New(time.Unix(1700000000, 0)), KeyringId: []byte("kr"), Epoch: 3,
		AuditKeyId: []byte("0123456789abcdef"),
		Tables: []*backupv1.Table{
			{Name: "a", Columns: []string{"id", "v", "at"}, Rows: 3},
			{Name: "empty", Columns: []string{"x"}},
			{Name: "b", Columns: []string{"name", "flag"}, Rows: 1},
		},
	}
	if err := w.Header(h); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 1, 2, 3, 456789000, time.UTC)
	if err := w.Rows("a", []*backupv1.Row{row(t, int64(1), []byte("x"), at), row(t, int16(2), nil, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Rows("a", []*backupv1.Row{row(t, int32(3), []byte{}, at)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Rows("b", []*backupv1.Row{row(t, "n", true)}); err != nil {
		t.Fatal(err)
	}
	mk, err := backup.ManifestKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(mk); err != nil {
		t.Fatal(err)
	}
	if w.Written() != int64(buf.Len()) {
		t.Fatalf("Written %d, file %d bytes", w.Written(), buf.Len())
	}
	return buf.Bytes()
}

// read reads a whole file and checks its MAC under key; it returns the
// rows read per table.
func read(file, key []byte) (map[string][]*backupv1.Row, error) {
	r := backup.NewReader(bytes.NewReader(file))
	if _, err := r.Header(); err != nil {
		return nil, err
	}
	got := map[string][]*backupv1.Row{}
	for {
		rows, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		got[rows.GetTable()] = append(got[rows.GetTable()], rows.GetRows()...)
	}
	mk, err := backup.ManifestKey(key)
	if err != nil {
		return nil, err
	}
	return got, r.CheckMAC(mk)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	file := sample(t, auditKey)
	if !bytes.HasPrefix(file, []byte(backup.Magic)) {
		t.Fatalf("file starts %q", file[:20])
	}
	got, err := read(file, auditKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(got["a"]) != 3 || len(got["b"]) != 1 || len(got["empty"]) != 0 {
		t.Fatalf("rows read: %v", got)
	}
	at := backup.SQL(got["a"][0].GetValues()[2]).(time.Time)
	if !at.Equal(time.Date(2026, 12, 3, 1, 2, 3, 456789000, time.UTC)) {
		t.Errorf("time read back as %v", at)
	}
	if backup.SQL(got["a"][1].GetValues()[1]) != nil {
		t.Errorf("NULL read back as %v", got["a"][1].GetValues()[1])
	}
	if b := backup.SQL(got["a"][2].GetValues()[1]); b == nil || len(b.([]byte)) != 0 {
		t.Errorf("empty bytes read back as %#v, want non-NULL empty", b)
	}
	if v := backup.SQL(got["a"][1].GetValues()[0]); v != int64(2) {
		t.Errorf("int16 read back as %#v", v)
	}
}

// Every byte of the file is covered: flipping any bit of any byte, or
// cutting the file anywhere, or adding a byte, is refused, as DataLoss.
func TestAnyEditIsRefused(t *testing.T) {
	t.Parallel()
	file := sample(t, auditKey)
	for i := range file {
		for _, bit := range []byte{0x01, 0x80} {
			edited := bytes.Clone(file)
			edited[i] ^= bit
			if _, err := read(edited, auditKey); err == nil || fault.CodeOf(err) != fault.DataLoss {
				t.Fatalf("byte %d ^ %#x: %v, want DataLoss", i, bit, err)
			}
		}
	}
	for n := range len(file) {
		if _, err := read(file[:n], auditKey); err == nil {
			t.Fatalf("cut to %d bytes: accepted", n)
		}
	}
	if _, err := read(append(bytes.Clone(file), 0), auditKey); err == nil || !strings.Contains(err.Error(), "follow the trailer") {
		t.Fatalf("a byte appended: %v", err)
	}
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := read(file, other); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Fatalf("another audit key: %v, want the MAC refused", err)
	}
}

// A file re-made with consistent hashes but without the MAC key is
// refused: the hashes alone prove nothing.
func TestRecomputedManifestNeedsTheKey(t *testing.T) {
	t.Parallel()
	forged := sample(t, bytes.Repeat([]byte{9}, 32))
	if _, err := read(forged, auditKey); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Fatalf("forged file: %v, want the MAC refused", err)
	}
}

func TestWriterOrder(t *testing.T) {
	t.Parallel()
	w := backup.NewWriter(io.Discard)
	if err := w.Rows("a", nil); err == nil {
		t.Error("rows before the header accepted")
	}
	if err := w.Header(&backupv1.Header{Tables: []*backupv1.Table{{Name: "a", Columns: []string{"x"}}, {Name: "b", Columns: []string{"x"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Rows("b", nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Rows("a", nil); err == nil {
		t.Error("an earlier table after a later one accepted")
	}
	if err := w.Rows("c", nil); err == nil {
		t.Error("a table not in the header accepted")
	}
	if _, err := backup.ManifestKey([]byte("short")); err == nil {
		t.Error("a short audit key accepted")
	}
}

func TestReaderRefusesShapes(t *testing.T) {
	t.Parallel()
	build := func(h *backupv1.Header, rows ...*backupv1.Rows) []byte {
		var buf bytes.Buffer
		buf.WriteString(backup.Magic)
		for _, r := range append([]*backupv1.Record{{Kind: &backupv1.Record_Header{Header: h}}}, func() []*backupv1.Record {
			var out []*backupv1.Record
			for _, r := range rows {
				out = append(out, &backupv1.Record{Kind: &backupv1.Record_Rows{Rows: r}})
			}
			return out
		}()...) {
			b, _ := proto.Marshal(r)
			buf.Write(append([]byte{byte(len(b))}, b...))
		}
		return buf.Bytes()
	}
	cases := map[string]struct {
		file []byte
		want string
	}{
		"not a backup": {[]byte("PGDMP custom dump"), "does not start"},
		"format 2":     {build(&backupv1.Header{FormatVersion: 2}), "format version 2"},
		"wide row": {build(&backupv1.Header{FormatVersion: 1, Tables: []*backupv1.Table{{Name: "a", Columns: []string{"x"}}}},
			&backupv1.Rows{Table: "a", Rows: []*backupv1.Row{{Values: []*backupv1.Value{{}, {}}}}}), "2 values, not 1"},
		"unknown table": {build(&backupv1.Header{FormatVersion: 1, Tables: []*backupv1.Table{{Name: "a", Columns: []string{"x"}}}},
			&backupv1.Rows{Table: "z"}), "does not list"},
		"no trailer": {build(&backupv1.Header{FormatVersion: 1}), "cut short"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := read(c.file, auditKey); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want an error containing %q", err, c.want)
			}
		})
	}
}
