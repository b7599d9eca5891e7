package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// Output formats of the -o flag.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// secretJSON is the -o json form of one secret version.
type secretJSON struct {
	Path      string            `json:"path"`
	Version   int64             `json:"version"`
	Data      map[string]string `json:"data"`
	CreatedAt string            `json:"created_at,omitempty"`
	CreatedBy string            `json:"created_by,omitempty"`
}

// putJSON is the -o json form of a stored secret version.
type putJSON struct {
	Path      string `json:"path"`
	Version   int64  `json:"version"`
	CreatedAt string `json:"created_at,omitempty"`
}

// deleteJSON is the -o json form of deleted versions.
type deleteJSON struct {
	Path     string  `json:"path"`
	Versions []int64 `json:"versions"`
}

// listJSON is the -o json form of a list of secret paths.
type listJSON struct {
	Paths []string `json:"paths"`
}

// statusJSON is the -o json form of the operator status.
type statusJSON struct {
	Initialized     bool   `json:"initialized"`
	Sealed          bool   `json:"sealed"`
	SchemaVersion   int64  `json:"schema_version"`
	KeeperReachable bool   `json:"keeper_reachable"`
	KeeperError     string `json:"keeper_error"`
	KeyringID       string `json:"keyring_id"`
	NexusVersion    string `json:"nexus_version"`
}

// keyringJSON is the -o json form of init and unseal.
type keyringJSON struct {
	KeyringID string `json:"keyring_id"`
}

// versionJSON is the -o json form of the Pilot version.
type versionJSON struct {
	Version string `json:"version"`
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeSecret renders one secret version. The table is a header line and
// KEY/VALUE rows sorted by key.
func writeSecret(w io.Writer, format string, s *nexusv1.Secret) error {
	data := s.GetData()
	if data == nil {
		data = map[string]string{}
	}
	if format == formatJSON {
		return writeJSON(w, secretJSON{
			Path:      s.GetPath(),
			Version:   s.GetVersion(),
			Data:      data,
			CreatedAt: formatTime(s.GetCreatedAt()),
			CreatedBy: s.GetCreatedBy(),
		})
	}
	header := fmt.Sprintf("%s (version %d", printable(s.GetPath()), s.GetVersion())
	if t := formatTime(s.GetCreatedAt()); t != "" {
		header += ", created " + t
	}
	if by := s.GetCreatedBy(); by != "" {
		header += " by " + printable(by)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s)\n\nKEY\tVALUE\n", header)
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(tw, "%s\t%s\n", printable(k), printable(data[k]))
	}
	return flush(tw)
}

// writePut renders the answer to a put.
func writePut(w io.Writer, format string, r *nexusv1.PutSecretResponse) error {
	if format == formatJSON {
		return writeJSON(w, putJSON{Path: r.GetPath(), Version: r.GetVersion(), CreatedAt: formatTime(r.GetCreatedAt())})
	}
	return writeLine(w, "stored %s version %d", printable(r.GetPath()), r.GetVersion())
}

// writeDeleted renders the versions of path that a delete removed.
func writeDeleted(w io.Writer, format, path string, versions []int64) error {
	if versions == nil {
		versions = []int64{}
	}
	if format == formatJSON {
		return writeJSON(w, deleteJSON{Path: path, Versions: versions})
	}
	if len(versions) == 0 {
		return writeLine(w, "no versions of %s deleted", printable(path))
	}
	list := make([]string, len(versions))
	for i, v := range versions {
		list[i] = strconv.FormatInt(v, 10)
	}
	noun := "versions"
	if len(versions) == 1 {
		noun = "version"
	}
	return writeLine(w, "deleted %s %s %s", printable(path), noun, strings.Join(list, ", "))
}

// writePaths renders secret paths, one per line.
func writePaths(w io.Writer, format string, paths []string) error {
	if paths == nil {
		paths = []string{}
	}
	if format == formatJSON {
		return writeJSON(w, listJSON{Paths: paths})
	}
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(printable(p))
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeStatus renders the operator status, with the next step when SPIKE
// is not ready.
func writeStatus(w io.Writer, format string, s *nexusv1.StatusResponse) error {
	if format == formatJSON {
		return writeJSON(w, statusJSON{
			Initialized:     s.GetInitialized(),
			Sealed:          s.GetSealed(),
			SchemaVersion:   s.GetSchemaVersion(),
			KeeperReachable: s.GetKeeperReachable(),
			KeeperError:     s.GetKeeperError(),
			KeyringID:       s.GetKeyringId(),
			NexusVersion:    s.GetNexusVersion(),
		})
	}
	keeper := yesNo(s.GetKeeperReachable())
	if e := s.GetKeeperError(); e != "" {
		keeper += " (" + printable(e) + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Initialised:\t%s\n", yesNo(s.GetInitialized()))
	fmt.Fprintf(tw, "Sealed:\t%s\n", yesNo(s.GetSealed()))
	fmt.Fprintf(tw, "Schema version:\t%d\n", s.GetSchemaVersion())
	fmt.Fprintf(tw, "Keeper reachable:\t%s\n", keeper)
	fmt.Fprintf(tw, "Keyring ID:\t%s\n", orDash(printable(s.GetKeyringId())))
	fmt.Fprintf(tw, "Nexus version:\t%s\n", orDash(printable(s.GetNexusVersion())))
	switch {
	case !s.GetInitialized():
		fmt.Fprintf(tw, "\nSPIKE is not initialised; initialise it with: echo '<password>' | spike operator init\n")
	case s.GetSealed():
		fmt.Fprintf(tw, "\nSPIKE is sealed; unseal it with: echo '<password>' | spike operator unseal\n")
	}
	return flush(tw)
}

// writeInit renders the keyring id of a new installation and what to do next.
func writeInit(w io.Writer, format string, r *nexusv1.InitResponse) error {
	if format == formatJSON {
		return writeJSON(w, keyringJSON{KeyringID: r.GetKeyringId()})
	}
	return writeLine(w, `SPIKE is initialised and unsealed. Keyring ID: %s

Next steps:
  - Keep the admin password safe. Nobody can recover it, and after all
    Keepers restart SPIKE can only be unsealed with it:
      echo '<password>' | spike operator unseal
  - Check the state:  spike operator status
  - Store a secret:   spike secret put apps/demo/db user=admin pass=s3cr3t
  - Read it back:     spike secret get apps/demo/db`, printable(r.GetKeyringId()))
}

// writeUnseal renders the keyring id that Keeper now holds.
func writeUnseal(w io.Writer, format string, r *nexusv1.UnsealResponse) error {
	if format == formatJSON {
		return writeJSON(w, keyringJSON{KeyringID: r.GetKeyringId()})
	}
	return writeLine(w, "SPIKE is unsealed. Keyring ID: %s", printable(r.GetKeyringId()))
}

// writeVersion renders the Pilot version.
func writeVersion(w io.Writer, format, version string) error {
	if format == formatJSON {
		return writeJSON(w, versionJSON{Version: version})
	}
	return writeLine(w, "spike %s", version)
}

func writeLine(w io.Writer, format string, args ...any) error {
	if _, err := fmt.Fprintf(w, format+"\n", args...); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func flush(tw *tabwriter.Writer) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// formatTime renders a timestamp as RFC 3339 in UTC, or "" when absent.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// printable returns s, or s quoted Go-style when it holds anything that would
// break a table line or drive the terminal (control characters, tabs,
// invalid UTF-8). -o json gives the exact bytes.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
