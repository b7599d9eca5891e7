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
	"gopkg.in/yaml.v3"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// Output formats of the -o flag.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
	formatEnv   = "env" // only `spike secret get`: KEY='value' lines for eval
)

// secretDoc is the -o json|yaml form of one secret version.
type secretDoc struct {
	Path      string            `json:"path" yaml:"path"`
	Version   int64             `json:"version" yaml:"version"`
	Data      map[string]string `json:"data" yaml:"data"`
	CreatedAt string            `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	CreatedBy string            `json:"created_by,omitempty" yaml:"created_by,omitempty"`
}

// writtenDoc is the -o json|yaml form of a version written by put, patch
// or rollback. FromVersion is the version a rollback copied.
type writtenDoc struct {
	Path        string `json:"path" yaml:"path"`
	Version     int64  `json:"version" yaml:"version"`
	CreatedAt   string `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	FromVersion int64  `json:"from_version,omitempty" yaml:"from_version,omitempty"`
}

// versionsDoc is the -o json|yaml form of the versions that delete,
// undelete or destroy changed.
type versionsDoc struct {
	Path     string  `json:"path" yaml:"path"`
	Versions []int64 `json:"versions" yaml:"versions"`
}

// listDoc is the -o json|yaml form of a list of secret paths.
type listDoc struct {
	Paths   []string `json:"paths" yaml:"paths"`
	Deleted []string `json:"deleted,omitempty" yaml:"deleted,omitempty"`
}

// statusDoc is the -o json|yaml form of the operator status.
type statusDoc struct {
	Initialized     bool   `json:"initialized" yaml:"initialized"`
	Sealed          bool   `json:"sealed" yaml:"sealed"`
	SchemaVersion   int64  `json:"schema_version" yaml:"schema_version"`
	KeeperReachable bool   `json:"keeper_reachable" yaml:"keeper_reachable"`
	KeeperError     string `json:"keeper_error" yaml:"keeper_error"`
	KeyringID       string `json:"keyring_id" yaml:"keyring_id"`
	NexusVersion    string `json:"nexus_version" yaml:"nexus_version"`
	// Keepers is every Keeper Nexus is configured with.
	Keepers []keeperDoc `json:"keepers" yaml:"keepers"`
}

// keeperDoc is one Keeper in the status and in seal's answer.
type keeperDoc struct {
	URL              string `json:"url" yaml:"url"`
	Reachable        bool   `json:"reachable" yaml:"reachable"`
	Error            string `json:"error,omitempty" yaml:"error,omitempty"`
	HoldsKeyring     bool   `json:"holds_keyring" yaml:"holds_keyring"`
	KeyringID        string `json:"keyring_id,omitempty" yaml:"keyring_id,omitempty"`
	ActiveKeyVersion uint32 `json:"active_key_version,omitempty" yaml:"active_key_version,omitempty"`
	SealedOnPurpose  bool   `json:"sealed_on_purpose" yaml:"sealed_on_purpose"`
	Source           string `json:"source,omitempty" yaml:"source,omitempty"`
}

func keeperDocs(ks []*nexusv1.KeeperStatus) []keeperDoc {
	docs := make([]keeperDoc, 0, len(ks))
	for _, k := range ks {
		docs = append(docs, keeperDoc{
			URL: k.GetUrl(), Reachable: k.GetReachable(), Error: k.GetError(),
			HoldsKeyring: k.GetHoldsKeyring(), KeyringID: k.GetKeyringId(), ActiveKeyVersion: k.GetActiveKeyVersion(),
			SealedOnPurpose: k.GetSealedOnPurpose(), Source: k.GetSource(),
		})
	}
	return docs
}

// keeperState says in a few words what one Keeper is doing.
func keeperState(k *nexusv1.KeeperStatus) string {
	switch {
	case !k.GetReachable():
		return "unreachable (" + printable(k.GetError()) + ")"
	case k.GetHoldsKeyring():
		s := fmt.Sprintf("holds the root key (version %d", k.GetActiveKeyVersion())
		if src := k.GetSource(); src != "" {
			s += ", from " + printable(src)
		}
		return s + ")"
	case k.GetSealedOnPurpose():
		return "sealed on purpose"
	case k.GetKeyringId() != "":
		return "holds another keyring (" + printable(k.GetKeyringId()) + ")"
	}
	return "sealed (waiting for a peer or an unseal)"
}

// writeKeepers writes one line per Keeper.
func writeKeepers(tw io.Writer, ks []*nexusv1.KeeperStatus) {
	for i, k := range ks {
		fmt.Fprintf(tw, "Keeper %d:\t%s  %s\n", i+1, printable(k.GetUrl()), keeperState(k))
	}
}

// writeSeal renders each Keeper's state after a seal.
func writeSeal(w io.Writer, format string, r *nexusv1.SealResponse) error {
	if encoded(format) {
		return writeDoc(w, format, struct {
			Keepers []keeperDoc `json:"keepers" yaml:"keepers"`
		}{keeperDocs(r.GetKeepers())})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if unconfirmed(r.GetKeepers()) == 0 {
		fmt.Fprintf(tw, "SPIKE is sealed: every Keeper forgot the root key.\n")
	} else {
		fmt.Fprintf(tw, "SPIKE may NOT be sealed: not every Keeper confirmed it forgot the root key.\n")
	}
	writeKeepers(tw, r.GetKeepers())
	fmt.Fprintf(tw, "\nUnseal it with: echo '<password>' | spike operator unseal\n")
	return flush(tw)
}

// keyringDoc is the -o json|yaml form of init and unseal.
type keyringDoc struct {
	KeyringID string `json:"keyring_id" yaml:"keyring_id"`
}

// versionDoc is the -o json|yaml form of `spike version`. Nexus is empty
// and NexusError says why when the Nexus version is unknown.
type versionDoc struct {
	Pilot      string `json:"pilot" yaml:"pilot"`
	Nexus      string `json:"nexus" yaml:"nexus"`
	NexusError string `json:"nexus_error,omitempty" yaml:"nexus_error,omitempty"`
}

// encoded reports whether format is a document format (json or yaml)
// rather than text for people.
func encoded(format string) bool {
	return format == formatJSON || format == formatYAML
}

// writeDoc writes v as JSON (indented, HTML characters unescaped) or YAML.
func writeDoc(w io.Writer, format string, v any) error {
	if format == formatYAML {
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
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
	switch format {
	case formatJSON, formatYAML:
		return writeDoc(w, format, secretDoc{
			Path:      s.GetPath(),
			Version:   s.GetVersion(),
			Data:      data,
			CreatedAt: formatTime(s.GetCreatedAt()),
			CreatedBy: s.GetCreatedBy(),
		})
	case formatEnv:
		return writeEnv(w, data)
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

// writeWritten renders the version that put, patch or rollback wrote; the
// table line is "<verb> <path> version <n>" (and the source version of a
// rollback).
func writeWritten(w io.Writer, format, verb string, doc writtenDoc) error {
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	if doc.FromVersion != 0 {
		return writeLine(w, "%s %s to version %d as version %d", verb, printable(doc.Path), doc.FromVersion, doc.Version)
	}
	return writeLine(w, "%s %s version %d", verb, printable(doc.Path), doc.Version)
}

// writePut renders the answer to a put.
func writePut(w io.Writer, format string, r *nexusv1.PutSecretResponse) error {
	return writeWritten(w, format, "stored", writtenDoc{Path: r.GetPath(), Version: r.GetVersion(), CreatedAt: formatTime(r.GetCreatedAt())})
}

// writeVersions renders the versions of path that delete, undelete or
// destroy (the verb, in the past tense) changed.
func writeVersions(w io.Writer, format, verb, path string, versions []int64) error {
	if versions == nil {
		versions = []int64{}
	}
	if encoded(format) {
		return writeDoc(w, format, versionsDoc{Path: path, Versions: versions})
	}
	if len(versions) == 0 {
		return writeLine(w, "no versions of %s were %s", printable(path), verb)
	}
	list := make([]string, len(versions))
	for i, v := range versions {
		list[i] = strconv.FormatInt(v, 10)
	}
	noun := "versions"
	if len(versions) == 1 {
		noun = "version"
	}
	return writeLine(w, "%s %s %s %s", verb, printable(path), noun, strings.Join(list, ", "))
}

// writePaths renders list entries: paths holds the full paths Nexus
// returned, shown holds what the table prints for each (relative to the
// listed directory, or the full path).
func writePaths(w io.Writer, format string, paths, shown, deleted []string) error {
	if paths == nil {
		paths = []string{}
	}
	if encoded(format) {
		return writeDoc(w, format, listDoc{Paths: paths, Deleted: deleted})
	}
	gone := make(map[string]bool, len(deleted))
	for _, p := range deleted {
		gone[p] = true
	}
	var b strings.Builder
	for i, p := range shown {
		b.WriteString(printable(p))
		if gone[paths[i]] {
			b.WriteString("  (deleted)")
		}
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
	if encoded(format) {
		return writeDoc(w, format, statusDoc{
			Initialized:     s.GetInitialized(),
			Sealed:          s.GetSealed(),
			SchemaVersion:   s.GetSchemaVersion(),
			KeeperReachable: s.GetKeeperReachable(),
			KeeperError:     s.GetKeeperError(),
			KeyringID:       s.GetKeyringId(),
			NexusVersion:    s.GetNexusVersion(),
			Keepers:         keeperDocs(s.GetKeepers()),
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
	writeKeepers(tw, s.GetKeepers())
	switch {
	case !s.GetInitialized():
		fmt.Fprintf(tw, "\nSPIKE is not initialised; initialise it with: echo '<password>' | spike operator init\n")
	case s.GetSealed():
		fmt.Fprintf(tw, "\nSPIKE is sealed; unseal it with: echo '<password>' | spike operator unseal\n")
	}
	return flush(tw)
}

// writeUnseal renders the keyring id that Keeper now holds.
func writeUnseal(w io.Writer, format string, r *nexusv1.UnsealResponse) error {
	if encoded(format) {
		return writeDoc(w, format, keyringDoc{KeyringID: r.GetKeyringId()})
	}
	return writeLine(w, "SPIKE is unsealed. Keyring ID: %s", printable(r.GetKeyringId()))
}

// writeVersion renders the Pilot version and the Nexus version, or why the
// Nexus version is unknown.
func writeVersion(w io.Writer, format string, doc versionDoc) error {
	if encoded(format) {
		return writeDoc(w, format, doc)
	}
	nexus := printable(doc.Nexus)
	if doc.NexusError != "" {
		nexus = "unknown (" + printable(doc.NexusError) + ")"
	}
	return writeLine(w, "pilot: %s\nnexus: %s", printable(doc.Pilot), orDash(nexus))
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
