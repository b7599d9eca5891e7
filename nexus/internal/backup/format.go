// Package backup is the format of SPIKE's backup files: a magic line, then
// length-delimited protobuf records (spike.backup.v1): one Header, batches
// of Rows table by table in the header's order, and one Trailer whose
// manifest (the header's SHA-256, and per table its row count and the
// SHA-256 of its records) is MACed with HMAC-SHA256 under a key derived
// from the audit MAC key. The package knows nothing of SQL or of Keeper:
// it writes and reads files, and checks everything a file says about
// itself; the caller supplies the audit MAC key.
package backup

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	backupv1 "github.com/spike-dev/spike/proto/spike/backup/v1"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Magic is the first line of every backup file; its number is the format
// version.
const Magic = "SPIKE-BACKUP 1\n"

// FormatVersion is the version of the records' format.
const FormatVersion = 1

// MaxRecordBytes bounds one record: a writer batches rows below it, and a
// reader refuses a longer length prefix before allocating anything.
const MaxRecordBytes = 4 << 20

// macInfo is the HKDF label of the manifest's MAC key: the audit MAC key
// is used for nothing else under this label.
const macInfo = "spike backup manifest v1"

// ManifestKey derives the key that MACs a backup's manifest from the audit
// MAC key. The caller clears both when done.
func ManifestKey(auditMACKey []byte) ([]byte, error) {
	if len(auditMACKey) < 32 {
		return nil, errors.New("backup manifest key: the audit MAC key is too short")
	}
	return hkdf.Key(sha256.New, auditMACKey, nil, macInfo, 32)
}

// Writer writes a backup file: Header once, Rows any number of times
// (tables in the header's order), then Finish.
type Writer struct {
	w       io.Writer
	tables  []*backupv1.Table
	current int
	header  []byte // its SHA-256
	digests []*backupv1.TableDigest
	hash    hash.Hash
	buf     []byte
	state   int // 0: nothing written, 1: header written, 2: finished
	written int64
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Written is the number of bytes written so far.
func (w *Writer) Written() int64 { return w.written }

// Header writes the magic line and h.
func (w *Writer) Header(h *backupv1.Header) error {
	if w.state != 0 {
		return errors.New("backup: header written twice")
	}
	if _, err := io.WriteString(w.w, Magic); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	w.written += int64(len(Magic))
	h.FormatVersion = FormatVersion
	raw, err := w.record(&backupv1.Record{Kind: &backupv1.Record_Header{Header: h}})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	w.header = sum[:]
	w.tables = h.GetTables()
	for _, t := range w.tables {
		w.digests = append(w.digests, &backupv1.TableDigest{Name: t.GetName()})
	}
	w.current = -1
	w.state = 1
	return nil
}

// Rows writes one batch of rows of table, which must be the table of the
// previous batch or one after it in the header's order.
func (w *Writer) Rows(table string, rows []*backupv1.Row) error {
	if w.state != 1 {
		return errors.New("backup: rows outside header and trailer")
	}
	i := slices.IndexFunc(w.tables, func(t *backupv1.Table) bool { return t.GetName() == table })
	switch {
	case i < 0:
		return fmt.Errorf("backup: table %q is not in the header", table)
	case i < w.current:
		return fmt.Errorf("backup: table %q after a later table", table)
	case i > w.current:
		w.closeTable()
		w.current, w.hash = i, sha256.New()
	}
	raw, err := w.record(&backupv1.Record{Kind: &backupv1.Record_Rows{Rows: &backupv1.Rows{Table: table, Rows: rows}}})
	if err != nil {
		return err
	}
	w.hash.Write(raw)
	w.digests[i].Rows += int64(len(rows))
	return nil
}

func (w *Writer) closeTable() {
	if w.hash != nil {
		w.digests[w.current].Sha256 = w.hash.Sum(nil)
	}
	w.hash = nil
}

// Finish writes the trailer: the manifest and its MAC under key (from
// ManifestKey).
func (w *Writer) Finish(key []byte) error {
	if w.state != 1 {
		return errors.New("backup: finish without a header")
	}
	w.closeTable()
	for _, d := range w.digests {
		if d.Sha256 == nil {
			d.Sha256 = emptyDigest()
		}
	}
	manifest, err := proto.MarshalOptions{Deterministic: true}.Marshal(&backupv1.Manifest{HeaderSha256: w.header, Tables: w.digests})
	if err != nil {
		return fmt.Errorf("encode backup manifest: %w", err)
	}
	if _, err := w.record(&backupv1.Record{Kind: &backupv1.Record_Trailer{Trailer: &backupv1.Trailer{
		Manifest: manifest, Mac: manifestMAC(key, manifest),
	}}}); err != nil {
		return err
	}
	w.state = 2
	return nil
}

// emptyDigest is the digest of a table without rows: SHA-256 of nothing.
func emptyDigest() []byte {
	sum := sha256.Sum256(nil)
	return sum[:]
}

// record writes r with its length prefix and returns both as written.
func (w *Writer) record(r *backupv1.Record) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode backup record: %w", err)
	}
	if len(body) > MaxRecordBytes {
		return nil, fmt.Errorf("backup: a record of %d bytes is over the limit of %d", len(body), MaxRecordBytes)
	}
	w.buf = binary.AppendUvarint(w.buf[:0], uint64(len(body)))
	w.buf = append(w.buf, body...)
	if _, err := w.w.Write(w.buf); err != nil {
		return nil, fmt.Errorf("write backup: %w", err)
	}
	w.written += int64(len(w.buf))
	return w.buf, nil
}

func manifestMAC(key, manifest []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(manifest)
	return m.Sum(nil)
}

// Damaged is the error of a file that is not an intact backup: cut short,
// edited, or not a backup at all.
func Damaged(format string, args ...any) error {
	return fault.New(fault.DataLoss, "backup refused: the file is damaged or was altered (%s)", fmt.Sprintf(format, args...))
}

// Reader reads a backup file and checks, as it goes, everything the file
// says about itself: the header first, tables in its order with its
// columns, the manifest's counts and hashes at the trailer, and that
// nothing follows the trailer. The MAC is checked by CheckMAC, once the
// caller has the audit MAC key.
type Reader struct {
	r       *bufio.Reader
	header  *backupv1.Header
	hsum    []byte
	current int
	hashes  []hash.Hash
	counts  []int64
	trailer *backupv1.Trailer
	read    int64
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10), current: -1} }

// BytesRead is the number of bytes read so far.
func (r *Reader) BytesRead() int64 { return r.read }

// Header reads the magic line and the header.
func (r *Reader) Header() (*backupv1.Header, error) {
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r.r, magic); err != nil {
		return nil, Damaged("it does not start with %q: %v", Magic[:len(Magic)-1], err)
	}
	r.read += int64(len(magic))
	if !bytes.Equal(magic, []byte(Magic)) {
		return nil, Damaged("it does not start with %q: not a SPIKE backup, or another format version", Magic[:len(Magic)-1])
	}
	rec, raw, err := r.record()
	if err != nil {
		return nil, err
	}
	h := rec.GetHeader()
	if h == nil {
		return nil, Damaged("the first record is not the header")
	}
	if h.GetFormatVersion() != FormatVersion {
		return nil, Damaged("record format version %d, this Nexus reads %d", h.GetFormatVersion(), FormatVersion)
	}
	names := map[string]bool{}
	for _, t := range h.GetTables() {
		if names[t.GetName()] || len(t.GetColumns()) == 0 {
			return nil, Damaged("table %q is listed twice or has no columns", t.GetName())
		}
		names[t.GetName()] = true
	}
	sum := sha256.Sum256(raw)
	r.header, r.hsum = h, sum[:]
	r.hashes = make([]hash.Hash, len(h.GetTables()))
	r.counts = make([]int64, len(h.GetTables()))
	return h, nil
}

// Next returns the next batch of rows, and io.EOF after the trailer, which
// it has checked against the rows read (counts and hashes) and the header.
func (r *Reader) Next() (*backupv1.Rows, error) {
	if r.header == nil {
		return nil, errors.New("backup: Next before Header")
	}
	if r.trailer != nil {
		return nil, io.EOF
	}
	rec, raw, err := r.record()
	if err != nil {
		return nil, err
	}
	switch k := rec.GetKind().(type) {
	case *backupv1.Record_Rows:
		return k.Rows, r.rows(k.Rows, raw)
	case *backupv1.Record_Trailer:
		if err := r.finish(k.Trailer); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return nil, Damaged("a record after the header is neither rows nor the trailer")
}

func (r *Reader) rows(rows *backupv1.Rows, raw []byte) error {
	tables := r.header.GetTables()
	i := slices.IndexFunc(tables, func(t *backupv1.Table) bool { return t.GetName() == rows.GetTable() })
	switch {
	case i < 0:
		return Damaged("rows of table %q, which the header does not list", rows.GetTable())
	case i < r.current:
		return Damaged("rows of table %q after a later table", rows.GetTable())
	}
	r.current = i
	if r.hashes[i] == nil {
		r.hashes[i] = sha256.New()
	}
	r.hashes[i].Write(raw)
	width := len(tables[i].GetColumns())
	for _, row := range rows.GetRows() {
		if len(row.GetValues()) != width {
			return Damaged("a row of %s has %d values, not %d", rows.GetTable(), len(row.GetValues()), width)
		}
	}
	r.counts[i] += int64(len(rows.GetRows()))
	return nil
}

func (r *Reader) finish(t *backupv1.Trailer) error {
	var m backupv1.Manifest
	if err := proto.Unmarshal(t.GetManifest(), &m); err != nil {
		return Damaged("the manifest does not decode: %v", err)
	}
	if !hmac.Equal(m.GetHeaderSha256(), r.hsum) {
		return Damaged("the header's hash is not the manifest's")
	}
	tables := r.header.GetTables()
	if len(m.GetTables()) != len(tables) {
		return Damaged("the manifest lists %d tables, the header %d", len(m.GetTables()), len(tables))
	}
	for i, d := range m.GetTables() {
		sum := emptyDigest()
		if r.hashes[i] != nil {
			sum = r.hashes[i].Sum(nil)
		}
		switch {
		case d.GetName() != tables[i].GetName():
			return Damaged("the manifest's table %d is %q, the header's %q", i, d.GetName(), tables[i].GetName())
		case d.GetRows() != r.counts[i]:
			return Damaged("table %s: %d rows in the file, %d in the manifest", d.GetName(), r.counts[i], d.GetRows())
		case !hmac.Equal(d.GetSha256(), sum):
			return Damaged("table %s: its rows' hash is not the manifest's", d.GetName())
		}
	}
	// Nothing may follow the trailer.
	if _, err := r.r.ReadByte(); !errors.Is(err, io.EOF) {
		if err == nil {
			return Damaged("bytes follow the trailer")
		}
		return fmt.Errorf("read backup: %w", err)
	}
	r.trailer = t
	return nil
}

// Counts returns the rows read of each table, in the header's order.
func (r *Reader) Counts() []int64 { return slices.Clone(r.counts) }

// CheckMAC checks the trailer's MAC under key (from ManifestKey). It must
// follow a Next that returned io.EOF.
func (r *Reader) CheckMAC(key []byte) error {
	if r.trailer == nil {
		return errors.New("backup: CheckMAC before the trailer was read")
	}
	if !hmac.Equal(manifestMAC(key, r.trailer.GetManifest()), r.trailer.GetMac()) {
		return fault.New(fault.DataLoss, "backup refused: its manifest's MAC does not verify: the file was altered, or it was not made under this root keyring")
	}
	return nil
}

// record reads one length-prefixed record, and returns it and its bytes
// as read (prefix included), for the hashes.
func (r *Reader) record() (*backupv1.Record, []byte, error) {
	n, err := binary.ReadUvarint(r.r)
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil, Damaged("it ends before the trailer: cut short")
	case err != nil:
		return nil, nil, Damaged("a record's length does not decode: %v", err)
	case n == 0 || n > MaxRecordBytes:
		return nil, nil, Damaged("a record's length is %d, outside 1 to %d", n, MaxRecordBytes)
	}
	raw := binary.AppendUvarint(nil, n)
	prefix := len(raw)
	raw = append(raw, make([]byte, n)...)
	if _, err := io.ReadFull(r.r, raw[prefix:]); err != nil {
		return nil, nil, Damaged("it ends inside a record: cut short")
	}
	r.read += int64(len(raw))
	var rec backupv1.Record
	if err := proto.Unmarshal(raw[prefix:], &rec); err != nil {
		return nil, nil, Damaged("a record does not decode: %v", err)
	}
	return &rec, raw, nil
}

// Value is v (a column value as pgx scans it) as a backup value.
func Value(v any) (*backupv1.Value, error) {
	switch x := v.(type) {
	case nil:
		return &backupv1.Value{}, nil
	case []byte:
		return &backupv1.Value{Kind: &backupv1.Value_Bytes{Bytes: bytes.Clone(x)}}, nil
	case string:
		return &backupv1.Value{Kind: &backupv1.Value_Text{Text: x}}, nil
	case int16:
		return &backupv1.Value{Kind: &backupv1.Value_Int{Int: int64(x)}}, nil
	case int32:
		return &backupv1.Value{Kind: &backupv1.Value_Int{Int: int64(x)}}, nil
	case int64:
		return &backupv1.Value{Kind: &backupv1.Value_Int{Int: x}}, nil
	case bool:
		return &backupv1.Value{Kind: &backupv1.Value_Boolean{Boolean: x}}, nil
	case time.Time:
		return &backupv1.Value{Kind: &backupv1.Value_TimeMicros{TimeMicros: x.UnixMicro()}}, nil
	}
	return nil, fmt.Errorf("backup: a column value of type %T", v)
}

// SQL is v as a query argument.
func SQL(v *backupv1.Value) any {
	switch k := v.GetKind().(type) {
	case *backupv1.Value_Bytes:
		return k.Bytes
	case *backupv1.Value_Text:
		return k.Text
	case *backupv1.Value_Int:
		return k.Int
	case *backupv1.Value_Boolean:
		return k.Boolean
	case *backupv1.Value_TimeMicros:
		return time.UnixMicro(k.TimeMicros).UTC()
	}
	return nil
}
