package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// Streams carry a whole database: they get a deadline of their own
// instead of --timeout (Nexus bounds them at an hour), and pieces of this
// size.
const (
	streamTimeout = 70 * time.Minute
	chunkBytes    = 256 << 10
)

// streamClient is the HTTP/2 client of the streaming calls. Unlike
// rpcclient's, it sends a request body as it is written (rpcclient reads a
// body whole before sending, to be able to send it again) and never
// retries: a backup or restore that broke is run again by the operator.
func streamClient(tlsConf *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf.Clone(),
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
	}}
}

func (inv *invocation) backupCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Stream a consistent backup of SPIKE's database to a file or stdout",
		Long: `backup writes a consistent snapshot of everything SPIKE needs to come back
(one read-only transaction: the sealed root keyring, the wrapped data keys,
the secrets, their versions, the policies and the audit trail), sealed as
the database holds it (values, metadata, policies and keys sealed; paths,
SPIFFE IDs, times and the audit trail in plain text), to --file or to stdout (so that it can be piped, e.g. to
'aws s3 cp - s3://…'). Writes keep being served while it runs.

The file ends with a manifest (rows and SHA-256 per table) authenticated
with a key only SPIKE's root key yields: 'spike operator backup verify'
checks it, and restore refuses a file edited in any byte. Admin tokens are
not in it (log in again after a restore). The backup opens with the
password or shares valid when it was taken: keep it as safe as those.

With --file, the file (mode 0600) appears only once the backup is
complete. On stdout, check the exit status: a failed backup exits non-zero
and what was written is incomplete. Progress (rows, bytes, rate, ETA)
shows on stderr when it is a terminal.`,
		Example: `  spike operator backup --file spike.backup
  spike operator backup | aws s3 cp - s3://backups/spike.backup
  spike operator backup verify spike.backup`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (file == "" || file == "-") && inv.stdoutIsTerminal() {
				return usageErrorf(cmd, "refusing to write a backup to a terminal: give --file FILE, or pipe stdout")
			}
			n, err := inv.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			return inv.backup(cmd.Context(), n, file)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "write the backup to this file (default: stdout)")
	cmd.AddCommand(inv.verifyBackupCommand())
	return cmd
}

// backup streams the backup to file (stdout when empty or "-").
func (inv *invocation) backup(ctx context.Context, n *nexus, file string) error {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	out := inv.p.Stdout
	var tmp *os.File
	if file != "" && file != "-" {
		var err error
		tmp, err = os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.partial")
		if err != nil {
			return fmt.Errorf("create the backup file: %w", err)
		}
		defer func() {
			if tmp != nil {
				_ = tmp.Close()
				_ = os.Remove(tmp.Name())
			}
		}()
		if err := tmp.Chmod(0o600); err != nil {
			return fmt.Errorf("create the backup file: %w", err)
		}
		out = tmp
	}
	stream, err := n.streams.Backup(ctx, connect.NewRequest(&nexusv1.BackupRequest{}))
	if err != nil {
		return transportError(err, n.url, streamTimeout)
	}
	defer stream.Close()
	p := inv.newProgress("backed up")
	var last *nexusv1.BackupResponse
	for stream.Receive() {
		last = stream.Msg()
		if _, err := out.Write(last.GetChunk()); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
		p.show(last.GetRowsDone(), last.GetRowsTotal(), last.GetBytesDone())
	}
	p.done()
	if err := stream.Err(); err != nil {
		return transportError(err, n.url, streamTimeout)
	}
	if last == nil {
		return errors.New("nexus sent no backup")
	}
	if tmp == nil {
		return nil
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	tmp = nil
	return writeLine(inv.p.Stdout, "Backup written to %s: %d rows, %d bytes.", file, last.GetRowsDone(), last.GetBytesDone())
}

func (inv *invocation) verifyBackupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a backup file: every row's hash and the manifest's MAC",
		Long: `verify sends a backup file (FILE, or - for stdin) to Nexus, which checks
every table's row count and SHA-256 against the manifest, and the
manifest's MAC under the key that only SPIKE's root key yields. A file
edited in any byte, cut short or extended is refused.

The MAC key is unwrapped by the running Keepers: verify works on the SPIKE
the backup was taken from, as long as the root key version that wrapped its
audit key exists (a rotation destroys older versions; restore still checks
such a backup, with the backup's own keyring).`,
		Example: `  spike operator backup verify spike.backup
  aws s3 cp s3://backups/spike.backup - | spike operator backup verify -`,
		Args: argCount(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, size, closeIn, err := inv.openBackup(args[0])
			if err != nil {
				return err
			}
			defer closeIn()
			n, err := inv.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), streamTimeout)
			defer cancel()
			stream := n.streams.VerifyBackup(ctx)
			if err := inv.sendChunks(in, size, "verified", func(chunk []byte) error {
				return stream.Send(&nexusv1.VerifyBackupRequest{Chunk: chunk})
			}); err != nil {
				return err
			}
			resp, err := stream.CloseAndReceive()
			if err != nil {
				return transportError(err, n.url, streamTimeout)
			}
			return writeBackupSummary(inv.p.Stdout, inv.output, "Backup verified", resp.Msg.GetBackup(), "")
		},
	}
}

func (inv *invocation) restoreCommand() *cobra.Command {
	var withShares bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into an empty database; SPIKE stays sealed",
		Long: `restore loads a backup file into the database of a Nexus that was never
initialised (migrated, empty: restore refuses any other, naming what it
found). Nexus loads it in one transaction and checks, before committing,
every table's rows against the manifest, then the manifest's MAC: the
Keepers open the backup's own sealed keyring with the credentials you give
(those valid when the backup was taken) to unwrap the key. Then it seals
the Keepers again and commits: SPIKE stays sealed until you unseal it with
those credentials.

Admin tokens are not restored: every token issued before the restore is
invalid; log in again. Audit settings (min_prune_age) stay the target's.
The Nexus that restores must be of the release that took the backup (the
schema versions must match).

` + passwordHelp + `

` + sharesHelp,
		Example: `  spike operator restore spike.backup
  echo "$PASSWORD" | spike operator restore spike.backup
  cat share-1 share-2 | spike operator restore --shares spike.backup`,
		Args: argCount(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "-" {
				return usageErrorf(cmd, "the credentials come from stdin: give the backup as a file")
			}
			in, size, closeIn, err := inv.openBackup(args[0])
			if err != nil {
				return err
			}
			defer closeIn()
			first := &nexusv1.RestoreRequest{}
			defer func() {
				clear(first.Password)
				clearAll(first.Shares)
			}()
			if withShares {
				first.Shares, err = readShares(cmd.Context(), "Share", inv.p.Stdin, inv.p.Stderr)
			} else {
				first.Password, err = readPassword(cmd.Context(), inv.p.Stdin, inv.p.Stderr, false, nil)
			}
			if err != nil {
				return passwordInputErr(cmd, err)
			}
			n, err := inv.connectWithoutToken(cmd.Context())
			if err != nil {
				return err
			}
			defer n.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), streamTimeout)
			defer cancel()
			stream := n.streams.Restore(ctx)
			err = stream.Send(first)
			if err == nil {
				err = inv.sendChunks(in, size, "restored", func(chunk []byte) error {
					return stream.Send(&nexusv1.RestoreRequest{Chunk: chunk})
				})
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			resp, err := stream.CloseAndReceive()
			if err != nil {
				return transportError(err, n.url, streamTimeout)
			}
			return writeBackupSummary(inv.p.Stdout, inv.output,
				"Backup restored. SPIKE is sealed: unseal it with the password or shares valid when the backup was taken, then log in again (admin tokens are not restored)",
				resp.Msg.GetBackup(), resp.Msg.GetNote())
		},
	}
	cmd.Flags().BoolVar(&withShares, "shares", false, "give unseal key shares instead of the password (one a line on stdin)")
	return cmd
}

// openBackup opens a backup file to send ("-": stdin), with its size when
// known (0 otherwise).
func (inv *invocation) openBackup(name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return inv.p.Stdin, 0, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open the backup: %w", err)
	}
	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	return f, size, func() { _ = f.Close() }, nil
}

// sendChunks sends in in pieces, with progress on a terminal. A send that
// fails with io.EOF means Nexus answered early (a refusal): the caller
// reads the answer.
func (inv *invocation) sendChunks(in io.Reader, size int64, verb string, send func([]byte) error) error {
	p := inv.newProgress(verb)
	defer p.done()
	buf := make([]byte, chunkBytes)
	var sent int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if serr := send(buf[:n]); serr != nil {
				return serr
			}
			sent += int64(n)
			p.show(0, 0, sent, size)
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return fmt.Errorf("read the backup: %w", err)
		}
	}
}

// progress shows how far a stream got, on stderr when it is a terminal.
type progress struct {
	inv   *invocation
	verb  string
	tty   bool
	start time.Time
	shown time.Time
}

func (inv *invocation) newProgress(verb string) *progress {
	return &progress{inv: inv, verb: verb, tty: inv.stderrIsTerminal(), start: time.Now()}
}

// show prints rows and bytes done, the rate and the time left, at most
// ten times a second; rows, totals of 0 are unknown. sizes is the total
// of bytes, if known.
func (p *progress) show(rows, totalRows, bytes int64, sizes ...int64) {
	if !p.tty || time.Since(p.shown) < 100*time.Millisecond {
		return
	}
	p.shown = time.Now()
	elapsed := max(time.Since(p.start).Seconds(), 0.001)
	line := fmt.Sprintf("\r%s %.1f MiB (%.1f MiB/s)", p.verb, float64(bytes)/(1<<20), float64(bytes)/(1<<20)/elapsed)
	done, total := rows, totalRows
	if len(sizes) > 0 && sizes[0] > 0 {
		done, total = bytes, sizes[0]
	}
	if totalRows > 0 {
		line += fmt.Sprintf(", %d of %d rows (%.0f/s)", rows, totalRows, float64(rows)/elapsed)
	}
	if total > 0 && done > 0 {
		left := time.Duration(float64(total-done) / (float64(done) / elapsed) * float64(time.Second))
		line += fmt.Sprintf(", ETA %s", max(left, 0).Round(time.Second))
	}
	fmt.Fprint(p.inv.p.Stderr, line+"   ")
}

func (p *progress) done() {
	if p.tty && !p.shown.IsZero() {
		fmt.Fprintln(p.inv.p.Stderr)
	}
}

// stdoutIsTerminal reports whether Pilot's standard output is a terminal.
func (inv *invocation) stdoutIsTerminal() bool {
	f, ok := inv.p.Stdout.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

type backupTableDoc struct {
	Table string `json:"table" yaml:"table"`
	Rows  int64  `json:"rows" yaml:"rows"`
}

type backupDoc struct {
	CreatedAt     string           `json:"created_at" yaml:"created_at"`
	SchemaVersion int64            `json:"schema_version" yaml:"schema_version"`
	KeyringID     string           `json:"keyring_id" yaml:"keyring_id"`
	Epoch         uint64           `json:"epoch" yaml:"epoch"`
	Bytes         int64            `json:"bytes" yaml:"bytes"`
	Tables        []backupTableDoc `json:"tables" yaml:"tables"`
	Note          string           `json:"note,omitempty" yaml:"note,omitempty"`
}

// writeBackupSummary prints what a verify or restore found in a backup.
func writeBackupSummary(w io.Writer, format, headline string, s *nexusv1.BackupSummary, note string) error {
	doc := backupDoc{
		CreatedAt: formatTime(s.GetCreatedAt()), SchemaVersion: s.GetSchemaVersion(), KeyringID: s.GetKeyringId(),
		Epoch: s.GetEpoch(), Bytes: s.GetBytes(), Note: note,
	}
	for _, t := range s.GetTables() {
		doc.Tables = append(doc.Tables, backupTableDoc{Table: t.GetTable(), Rows: t.GetRows()})
	}
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	if err := writeLine(w, "%s.", headline); err != nil {
		return err
	}
	if err := writeLine(w, "Taken %s, schema %d, keyring %s (epoch %d), %d bytes.", doc.CreatedAt, doc.SchemaVersion, doc.KeyringID, doc.Epoch, doc.Bytes); err != nil {
		return err
	}
	for _, t := range doc.Tables {
		if err := writeLine(w, "  %-18s %d rows", t.Table, t.Rows); err != nil {
			return err
		}
	}
	if note != "" {
		return writeLine(w, "Note: %s.", note)
	}
	return nil
}
