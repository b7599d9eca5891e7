package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	backupv1 "github.com/spike-dev/spike/proto/spike/backup/v1"
	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"

	"github.com/spike-dev/spike/nexus/internal/backup"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/keeper"
	"github.com/spike-dev/spike/nexus/internal/postgres"
)

// Streams (backup, verify, restore) carry a whole database: they get
// bounds of their own instead of maxRequestDuration and the HTTP server's
// read and write timeouts. A stream that is stalled longer than
// streamIdle between two messages is cut.
const (
	maxStreamDuration = time.Hour
	streamIdle        = 2 * time.Minute
	// chunkBytes is the size of the file pieces a stream carries, far
	// below maxRequestBytes.
	chunkBytes = 256 << 10
	// batchRows and batchBytes bound one Rows record of a backup.
	batchRows  = 1000
	batchBytes = 512 << 10
)

// streamProcedures are the streaming procedures: their HTTP deadlines are
// extended by streamDeadlines.
var streamProcedures = map[string]bool{
	nexusv1connect.OperatorServiceBackupProcedure:       true,
	nexusv1connect.OperatorServiceVerifyBackupProcedure: true,
	nexusv1connect.OperatorServiceRestoreProcedure:      true,
	nexusv1connect.SecretServiceWatchSecretsProcedure:   true,
}

// streamDeadlines lets a streaming procedure's request and response run
// for up to maxStreamDuration (the server's own limits are for unary
// calls); HTTP/2 applies them per stream.
func streamDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if streamProcedures[r.URL.Path] {
			rc := http.NewResponseController(w)
			deadline := time.Now().Add(maxStreamDuration + time.Minute)
			_ = rc.SetReadDeadline(deadline)
			_ = rc.SetWriteDeadline(deadline)
		}
		next.ServeHTTP(w, r)
	})
}

// streamed runs one streaming RPC through the pipeline, as unary does for
// unary ones: request id, bounded deadline, authorization (the rules
// table), the handler, the audit record committed before the last
// message leaves. handle returns what is left to send (nil: nothing),
// sent only once the record is committed: the trailer of a backup, so
// that a backup whose record could not be written is incomplete.
func streamed(ctx context.Context, s *Server, spec connect.Spec, peer connect.Peer, header, respHeader http.Header,
	handle func(context.Context, *call) (func() error, error),
) error {
	start := time.Now()
	markObserved(ctx)
	ctx, cancel := context.WithTimeout(ctx, maxStreamDuration)
	defer cancel()
	procedure := spec.Procedure
	c := &call{id: newRequestID()}
	c.caller, _ = mtls.Caller(ctx)
	c.record = s.trail.Begin(ctx, c.id, c.caller.String(), peer.Addr, procedure)
	if respHeader != nil {
		respHeader.Set("Spike-Request-Id", c.id)
	}
	var last func() error
	reason, err := s.decide(ctx, c, procedure, header, nil)
	if err != nil {
		c.record.Deny(err.Error())
	} else {
		c.record.Allow(reason)
		// One stream of each kind at a time on this Nexus: each holds a
		// database connection (and a backup a snapshot) for minutes.
		slot, _ := s.streamSlots.LoadOrStore(procedure, make(chan struct{}, 1))
		select {
		case slot.(chan struct{}) <- struct{}{}:
			last, err = handle(ctx, c)
			<-slot.(chan struct{})
		default:
			err = fault.New(fault.TooMany, "another %s runs on this Nexus: one at a time; try again when it is done", rpcLabel(procedure))
		}
	}
	err = s.toConnect(err, c.id)
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	if aerr := s.trail.Finish(ctx, c.record, code); aerr != nil {
		if code == connect.CodeUnknown.String() {
			s.log.Error("audit record not written: the answer (an uncertain outcome) is sent all the same", "request_id", c.id, "error", aerr.Error())
		} else {
			s.log.Error("audit record not written: response withheld", "request_id", c.id, "error", aerr.Error())
			err = connect.NewError(connect.CodeUnavailable, errors.New(withheld(aerr)))
			code = connect.CodeUnavailable.String()
		}
	}
	if err == nil && last != nil {
		if lerr := last(); lerr != nil {
			err = s.toConnect(lerr, c.id)
			code = connect.CodeOf(err).String()
		}
	}
	elapsed := time.Since(start)
	s.log.Info("request", "request_id", c.id, "caller", c.caller.String(), "procedure", procedure,
		"peer", peer.Addr, "code", code, "duration_ms", float64(elapsed.Microseconds())/1000)
	s.metrics.ObserveRequest(rpcLabel(procedure), code, elapsed)
	if err != nil {
		if ce := new(connect.Error); errors.As(err, &ce) {
			ce.Meta().Set("Spike-Request-Id", c.id)
		}
		return err
	}
	return nil
}

// Backup streams a consistent snapshot of the database as a backup file.
func (o operatorServer) Backup(ctx context.Context, req *connect.Request[nexusv1.BackupRequest], stream *connect.ServerStream[nexusv1.BackupResponse]) error {
	return streamed(ctx, o.Server, req.Spec(), req.Peer(), req.Header(), stream.ResponseHeader(),
		func(ctx context.Context, c *call) (func() error, error) { return o.backup(ctx, c, stream) })
}

// chunker sends what a backup.Writer writes as BackupResponse chunks, with
// the progress; held bytes wait for release.
type chunker struct {
	stream *connect.ServerStream[nexusv1.BackupResponse]
	buf    []byte
	hold   bool
	rows   int64
	total  int64
	sent   int64
}

func (ch *chunker) Write(p []byte) (int, error) {
	ch.buf = append(ch.buf, p...)
	if !ch.hold && len(ch.buf) >= chunkBytes {
		return len(p), ch.flush()
	}
	return len(p), nil
}

func (ch *chunker) flush() error {
	for len(ch.buf) > 0 {
		n := min(len(ch.buf), chunkBytes)
		ch.sent += int64(n)
		err := ch.stream.Send(&nexusv1.BackupResponse{Chunk: ch.buf[:n], RowsDone: ch.rows, RowsTotal: ch.total, BytesDone: ch.sent})
		if err != nil {
			return fmt.Errorf("send backup: %w", err)
		}
		ch.buf = ch.buf[n:]
	}
	ch.buf = nil
	return nil
}

func (o operatorServer) backup(ctx context.Context, c *call, stream *connect.ServerStream[nexusv1.BackupResponse]) (func() error, error) {
	out := &chunker{stream: stream}
	err := o.store.Snapshot(ctx, func(sn *postgres.Snapshot) error {
		info, err := sn.Info(ctx)
		if err != nil {
			return err
		}
		c.record.SetTarget(hex.EncodeToString(info.KeyringID))
		key, err := o.manifestKey(ctx, info.AuditKey.ID, info.AuditKey.Wrapped, info.AuditKey.RootKeyVersion,
			o.keeper.DecryptDataKey)
		if err != nil {
			return err
		}
		defer clear(key)
		h := &backupv1.Header{
			SchemaVersion: info.SchemaVersion, CreatedAt: timestamppb.Now(), KeyringId: info.KeyringID,
			Epoch: info.Epoch, AuditKeyId: info.AuditKey.ID, NexusVersion: o.version,
		}
		tables := postgres.BackupTables()
		for i, t := range tables {
			h.Tables = append(h.Tables, &backupv1.Table{Name: t.Name, Columns: t.Columns, Rows: info.Rows[i]})
			out.total += info.Rows[i]
		}
		w := backup.NewWriter(out)
		if err := w.Header(h); err != nil {
			return err
		}
		for _, t := range tables {
			var batch []*backupv1.Row
			size := 0
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				err := w.Rows(t.Name, batch)
				out.rows += int64(len(batch))
				batch, size = batch[:0], 0
				return err
			}
			err := sn.Scan(ctx, t, func(vals []any) error {
				row := &backupv1.Row{Values: make([]*backupv1.Value, len(vals))}
				for i, v := range vals {
					bv, err := backup.Value(v)
					if err != nil {
						return fmt.Errorf("%s.%s: %w", t.Name, t.Columns[i], err)
					}
					row.Values[i] = bv
					if b, ok := v.([]byte); ok {
						size += len(b)
					}
					if s, ok := v.(string); ok {
						size += len(s)
					}
				}
				batch = append(batch, row)
				size += 16 * len(vals)
				if len(batch) >= batchRows || size >= batchBytes {
					return flush()
				}
				return nil
			})
			if err == nil {
				err = flush()
			}
			if err != nil {
				return err
			}
		}
		if err := out.flush(); err != nil {
			return err
		}
		// The trailer leaves only after the audit record is committed.
		out.hold = true
		return w.Finish(key)
	})
	if err != nil {
		return nil, err
	}
	o.log.Info("backup taken", "rows", out.rows, "bytes", out.sent+int64(len(out.buf)))
	return out.flush, nil
}

// unwrapper unwraps a data key through the Keepers.
type unwrapper func(ctx context.Context, id, wrapped []byte, rootKeyVersion uint32) ([]byte, error)

// manifestKey unwraps a backup's audit MAC key through unwrap and derives
// the manifest's MAC key from it.
func (o operatorServer) manifestKey(ctx context.Context, id, wrapped []byte, version uint32, unwrap unwrapper) ([]byte, error) {
	raw, err := unwrap(ctx, id, wrapped, version)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return backup.ManifestKey(raw)
}

// streamReader reads the chunks of a client stream as one file; first,
// if set, is the chunk of a message already received.
type streamReader[T interface{ GetChunk() []byte }] struct {
	stream interface {
		Receive() bool
		Msg() T
		Err() error
	}
	buf []byte
}

func (r *streamReader[T]) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		received := make(chan bool, 1)
		go func() { received <- r.stream.Receive() }()
		select {
		case ok := <-received:
			if !ok {
				if err := r.stream.Err(); err != nil {
					return 0, fmt.Errorf("receive backup: %w", err)
				}
				return 0, io.EOF
			}
		case <-time.After(streamIdle):
			return 0, fault.New(fault.Aborted, "no part of the backup file arrived for %s: the stream was cut", streamIdle)
		}
		r.buf = r.stream.Msg().GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// readBackup is what verify and restore share: it reads a backup file,
// checking every hash and count as it goes, hands each batch to load (nil:
// none), and returns what the MAC check needs.
type readBackup struct {
	r       *backup.Reader
	header  *backupv1.Header
	keyring keeper.Keyring
	// auditKey is the backup's audit MAC key, wrapped.
	auditKey    []byte
	auditKeyVer uint32
	auditKeyID  []byte
}

func (rb *readBackup) read(load func(t *backupv1.Table, rows [][]any) error) error {
	tables := rb.header.GetTables()
	for {
		batch, err := rb.r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		i := slices.IndexFunc(tables, func(t *backupv1.Table) bool { return t.GetName() == batch.GetTable() })
		t := tables[i]
		rows := make([][]any, len(batch.GetRows()))
		for j, row := range batch.GetRows() {
			vals := make([]any, len(row.GetValues()))
			for k, v := range row.GetValues() {
				vals[k] = backup.SQL(v)
			}
			rows[j] = vals
			rb.note(t, vals)
		}
		if load != nil {
			if err := load(t, rows); err != nil {
				return err
			}
		}
	}
	switch {
	case len(rb.keyring.ID) == 0 || !bytes.Equal(rb.keyring.ID, rb.header.GetKeyringId()):
		return backup.Damaged("it holds no root keyring, or not the one its header names")
	case !bytes.Equal(rb.auditKeyID, rb.header.GetAuditKeyId()) || rb.auditKey == nil:
		return backup.Damaged("it holds no audit key, or not the one its header names")
	}
	return nil
}

// note keeps what the MAC check needs from the rows that pass: the
// keyring, and the audit key's row.
func (rb *readBackup) note(t *backupv1.Table, vals []any) {
	col := func(name string) any {
		if i := slices.Index(t.GetColumns(), name); i >= 0 {
			return vals[i]
		}
		return nil
	}
	asBytes := func(v any) []byte { b, _ := v.([]byte); return b }
	asInt := func(v any) int64 { n, _ := v.(int64); return n }
	switch t.GetName() {
	case "root_keyrings":
		rb.keyring = keeper.Keyring{ID: asBytes(col("keyring_id")), KDFParams: asBytes(col("kdf_params")),
			Ciphertext: asBytes(col("ciphertext")), Sealed: asBytes(col("sealed")), Epoch: uint64(asInt(col("epoch")))}
		if len(rb.keyring.KDFParams) == 0 {
			rb.keyring.KDFParams = nil
		}
		if len(rb.keyring.Ciphertext) == 0 {
			rb.keyring.Ciphertext = nil
		}
	case "audit_keys":
		rb.auditKeyID = asBytes(col("dek_id"))
	case "data_keys":
		if id := asBytes(col("id")); id != nil && bytes.Equal(id, rb.header.GetAuditKeyId()) {
			rb.auditKey = asBytes(col("wrapped"))
			rb.auditKeyVer = uint32(asInt(col("root_key_version")))
		}
	}
}

func (rb *readBackup) summary() *nexusv1.BackupSummary {
	s := &nexusv1.BackupSummary{
		CreatedAt: rb.header.GetCreatedAt(), SchemaVersion: rb.header.GetSchemaVersion(),
		KeyringId: hex.EncodeToString(rb.header.GetKeyringId()), Epoch: rb.header.GetEpoch(), Bytes: rb.r.BytesRead(),
	}
	counts := rb.r.Counts()
	for i, t := range rb.header.GetTables() {
		s.Tables = append(s.Tables, &nexusv1.BackupTableCount{Table: t.GetName(), Rows: counts[i]})
	}
	return s
}

func startReading(r io.Reader) (*readBackup, error) {
	rb := &readBackup{r: backup.NewReader(r)}
	h, err := rb.r.Header()
	if err != nil {
		return nil, err
	}
	rb.header = h
	return rb, nil
}

// VerifyBackup checks a backup file: every hash and count, then the MAC,
// under the audit key the running keyring unwraps.
func (o operatorServer) VerifyBackup(ctx context.Context, stream *connect.ClientStream[nexusv1.VerifyBackupRequest]) (*connect.Response[nexusv1.VerifyBackupResponse], error) {
	var resp *nexusv1.VerifyBackupResponse
	err := streamed(ctx, o.Server, stream.Spec(), stream.Peer(), stream.RequestHeader(), nil,
		func(ctx context.Context, c *call) (func() error, error) {
			var err error
			resp, err = o.verifyBackup(ctx, c, &streamReader[*nexusv1.VerifyBackupRequest]{stream: stream})
			return nil, err
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (o operatorServer) verifyBackup(ctx context.Context, c *call, r io.Reader) (*nexusv1.VerifyBackupResponse, error) {
	rb, err := startReading(r)
	if err != nil {
		return nil, err
	}
	c.record.SetTarget(hex.EncodeToString(rb.header.GetKeyringId()))
	if err := rb.read(nil); err != nil {
		return nil, err
	}
	if running := o.keeper.State().KeyringID; !bytes.Equal(running, rb.header.GetKeyringId()) {
		return nil, fault.New(fault.FailedPrecondition,
			"the backup is of keyring %x, this SPIKE's is %x: only the SPIKE it was taken from can check its MAC (restore checks it with the backup's own keyring)",
			rb.header.GetKeyringId(), running)
	}
	if oldest, active, ok := heldSpan(o.keeper.State()); ok && (rb.auditKeyVer < oldest || rb.auditKeyVer > active) {
		return nil, fault.New(fault.FailedPrecondition,
			"this backup's audit key is wrapped under root key version %d, and the running keyring holds versions %d to %d: a rotation since the backup destroyed that version, so its MAC cannot be checked here. Restore still checks it, with the backup's own keyring",
			rb.auditKeyVer, oldest, active)
	}
	key, err := o.manifestKey(ctx, rb.header.GetAuditKeyId(), rb.auditKey, rb.auditKeyVer, o.keeper.DecryptDataKey)
	if err != nil {
		if fault.CodeOf(err) == fault.Unavailable {
			return nil, err
		}
		return nil, fault.Wrap(fault.FailedPrecondition, err,
			"the running keyring cannot unwrap this backup's audit key (wrapped under root key version %d): a rotation since the backup destroyed that version, or the file was altered. Restore checks the MAC with the backup's own keyring",
			rb.auditKeyVer)
	}
	defer clear(key)
	if err := rb.r.CheckMAC(key); err != nil {
		return nil, err
	}
	return &nexusv1.VerifyBackupResponse{Backup: rb.summary()}, nil
}

// Restore loads a backup into an empty database.
func (o operatorServer) Restore(ctx context.Context, stream *connect.ClientStream[nexusv1.RestoreRequest]) (*connect.Response[nexusv1.RestoreResponse], error) {
	var resp *nexusv1.RestoreResponse
	err := streamed(ctx, o.Server, stream.Spec(), stream.Peer(), stream.RequestHeader(), nil,
		func(ctx context.Context, c *call) (func() error, error) {
			var err error
			resp, err = o.restore(ctx, c, stream)
			return nil, err
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (o operatorServer) restore(ctx context.Context, c *call, stream *connect.ClientStream[nexusv1.RestoreRequest]) (*nexusv1.RestoreResponse, error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, fmt.Errorf("receive restore: %w", err)
		}
		return nil, fault.New(fault.Invalid, "the restore stream is empty: the first message carries the credentials")
	}
	first := stream.Msg()
	creds := keeper.Credentials{Password: first.GetPassword(), Shares: first.GetShares()}
	defer clearCredentials(creds)
	if err := checkCredentials(creds); err != nil {
		return nil, err
	}
	if len(first.GetChunk()) > 0 {
		return nil, fault.New(fault.Invalid, "chunk: the first message carries the credentials only")
	}
	version, err := o.store.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := o.store.BeginRestore(ctx, c.record)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback(ctx)
		}
	}()
	rb, err := startReading(&streamReader[*nexusv1.RestoreRequest]{stream: stream})
	if err != nil {
		return nil, err
	}
	c.record.SetTarget(hex.EncodeToString(rb.header.GetKeyringId()))
	if err := compatible(rb.header, version); err != nil {
		return nil, err
	}
	byName := map[string]postgres.BackupTable{}
	for _, t := range postgres.BackupTables() {
		byName[t.Name] = t
	}
	if err := rb.read(func(t *backupv1.Table, rows [][]any) error { return tx.Load(ctx, byName[t.GetName()], rows) }); err != nil {
		return nil, err
	}
	// Every hash checked out. The MAC needs the backup's own keyring,
	// opened by the Keepers with the credentials of the backup's time.
	uerr := o.withBackoff(c, func() error { return o.keeper.Unseal(ctx, creds, rb.keyring) })
	var key []byte
	kerr := uerr
	if uerr == nil {
		key, kerr = o.manifestKey(ctx, rb.header.GetAuditKeyId(), rb.auditKey, rb.auditKeyVer, o.keeper.UnwrapRestoring)
	}
	defer clear(key)
	// Once an unseal was sent, whatever came of it, the Keepers forget
	// the keyring again before the rows become visible: SPIKE stays sealed
	// until an operator unseals. A Keeper that does not confirm may hold
	// it: then nothing is restored.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	results, serr := o.keeper.Seal(sctx)
	cancel()
	switch {
	case uerr != nil:
		return nil, uerr
	case kerr != nil && fault.CodeOf(kerr) == fault.DataLoss:
		return nil, fault.Wrap(fault.DataLoss, kerr, "restore refused: the backup's keyring does not unwrap its audit key: the file was altered")
	case kerr != nil:
		return nil, fault.Wrap(fault.CodeOf(kerr), kerr, "restore abandoned: no Keeper unwrapped the backup's audit key; nothing was restored")
	}
	if err := rb.r.CheckMAC(key); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fault.Wrap(fault.Unavailable, serr, "restore abandoned: the Keepers could not be sealed again after the check; nothing was restored (a Keeper may still hold the backup's keyring: spike operator status)")
	}
	for _, r := range results {
		if !r.Sealed {
			o.log.Warn("restore: a Keeper did not confirm the seal", "keeper", r.Name)
			return nil, fault.New(fault.Unavailable, "restore abandoned: Keeper %s did not confirm that it forgot the backup's keyring; nothing was restored: retry when every Keeper answers", r.Name)
		}
	}
	resp := &nexusv1.RestoreResponse{Backup: rb.summary(), Note: tx.Note()}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	committed = true
	o.checkKeepers(ctx)
	o.log.Warn("database restored from a backup; SPIKE is sealed until unsealed with the credentials of the backup's time",
		"keyring_id", hex.EncodeToString(rb.header.GetKeyringId()), "backup_created_at", rb.header.GetCreatedAt().AsTime())
	return resp, nil
}

// compatible checks that a backup's tables are this schema's, column for
// column: a backup restores into the schema version it was taken from.
func compatible(h *backupv1.Header, version int64) error {
	if h.GetSchemaVersion() != version {
		return fault.New(fault.FailedPrecondition,
			"restore refused: the backup is of schema version %d, this database is at %d: restore with the Nexus release that took it, into a database migrated by it",
			h.GetSchemaVersion(), version)
	}
	want := postgres.BackupTables()
	got := h.GetTables()
	same := len(got) == len(want)
	for i := 0; same && i < len(want); i++ {
		same = got[i].GetName() == want[i].Name && slices.Equal(got[i].GetColumns(), want[i].Columns)
	}
	if !same {
		return fault.New(fault.FailedPrecondition,
			"restore refused: the backup's tables and columns are not the ones this Nexus restores (it was taken by another release, or the file was altered): restore with the Nexus release that took it")
	}
	return nil
}

// heldSpan is the span of root key versions of the newest epoch a Keeper
// holds; ok is false when none holds the keyring.
func heldSpan(st keeper.State) (oldest, active uint32, ok bool) {
	var epoch uint64
	for _, k := range st.Keepers {
		if k.Holds && (!ok || k.Epoch > epoch) {
			epoch, oldest, active, ok = k.Epoch, k.OldestKeyVersion, k.ActiveKeyVersion, true
		}
	}
	return oldest, active, ok
}
