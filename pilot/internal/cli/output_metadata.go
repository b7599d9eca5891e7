package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// metadataDoc is the -o json|yaml form of a secret's metadata.
type metadataDoc struct {
	Path                 string            `json:"path" yaml:"path"`
	CurrentVersion       int64             `json:"current_version" yaml:"current_version"`
	OldestVersion        int64             `json:"oldest_version" yaml:"oldest_version"`
	MaxVersions          int32             `json:"max_versions" yaml:"max_versions"`
	EffectiveMaxVersions int32             `json:"effective_max_versions" yaml:"effective_max_versions"`
	CASRequired          bool              `json:"cas_required" yaml:"cas_required"`
	CustomMetadata       map[string]string `json:"custom_metadata" yaml:"custom_metadata"`
	CreatedAt            string            `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	UpdatedAt            string            `json:"updated_at,omitempty" yaml:"updated_at,omitempty"`
	Versions             []versionMetaDoc  `json:"versions" yaml:"versions"`
}

// versionMetaDoc is the -o json|yaml form of one version's metadata.
type versionMetaDoc struct {
	Version     int64  `json:"version" yaml:"version"`
	State       string `json:"state" yaml:"state"`
	CreatedAt   string `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	CreatedBy   string `json:"created_by,omitempty" yaml:"created_by,omitempty"`
	DeletedAt   string `json:"deleted_at,omitempty" yaml:"deleted_at,omitempty"`
	DestroyedAt string `json:"destroyed_at,omitempty" yaml:"destroyed_at,omitempty"`
}

// deletedDoc is the -o json|yaml form of a secret removed with all its
// versions.
type deletedDoc struct {
	Path    string `json:"path" yaml:"path"`
	Deleted bool   `json:"deleted" yaml:"deleted"`
}

// stateName is how output names a version state.
func stateName(s nexusv1.VersionState) string {
	switch s {
	case nexusv1.VersionState_VERSION_STATE_ACTIVE:
		return "active"
	case nexusv1.VersionState_VERSION_STATE_DELETED:
		return "deleted"
	case nexusv1.VersionState_VERSION_STATE_DESTROYED:
		return "destroyed"
	default:
		return "unknown"
	}
}

// writeMetadata renders a secret's settings, custom metadata and the state
// of each retained version.
func writeMetadata(w io.Writer, format string, m *nexusv1.SecretMetadata) error {
	custom := m.GetCustomMetadata()
	if custom == nil {
		custom = map[string]string{}
	}
	if encoded(format) {
		doc := metadataDoc{
			Path:                 m.GetPath(),
			CurrentVersion:       m.GetCurrentVersion(),
			OldestVersion:        m.GetOldestVersion(),
			MaxVersions:          m.GetMaxVersions(),
			EffectiveMaxVersions: m.GetEffectiveMaxVersions(),
			CASRequired:          m.GetCasRequired(),
			CustomMetadata:       custom,
			CreatedAt:            formatTime(m.GetCreatedAt()),
			UpdatedAt:            formatTime(m.GetUpdatedAt()),
			Versions:             make([]versionMetaDoc, 0, len(m.GetVersions())),
		}
		for _, v := range m.GetVersions() {
			doc.Versions = append(doc.Versions, versionMetaDoc{
				Version:     v.GetVersion(),
				State:       stateName(v.GetState()),
				CreatedAt:   formatTime(v.GetCreatedAt()),
				CreatedBy:   v.GetCreatedBy(),
				DeletedAt:   formatTime(v.GetDeletedAt()),
				DestroyedAt: formatTime(v.GetDestroyedAt()),
			})
		}
		return writeDoc(w, format, doc)
	}

	maxVersions := strconv.Itoa(int(m.GetMaxVersions()))
	if m.GetMaxVersions() == 0 {
		maxVersions = fmt.Sprintf("default (%d)", m.GetEffectiveMaxVersions())
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Path:\t%s\n", printable(m.GetPath()))
	fmt.Fprintf(tw, "Current version:\t%s\n", versionOrDash(m.GetCurrentVersion()))
	fmt.Fprintf(tw, "Oldest version:\t%s\n", versionOrDash(m.GetOldestVersion()))
	fmt.Fprintf(tw, "Max versions:\t%s\n", maxVersions)
	fmt.Fprintf(tw, "CAS required:\t%s\n", yesNo(m.GetCasRequired()))
	fmt.Fprintf(tw, "Created:\t%s\n", orDash(formatTime(m.GetCreatedAt())))
	fmt.Fprintf(tw, "Updated:\t%s\n", orDash(formatTime(m.GetUpdatedAt())))
	label := "Custom metadata:"
	if len(custom) == 0 {
		fmt.Fprintf(tw, "%s\t-\n", label)
	}
	for _, k := range slices.Sorted(maps.Keys(custom)) {
		fmt.Fprintf(tw, "%s\t%s=%s\n", label, printable(k), printable(custom[k]))
		label = ""
	}
	if err := flush(tw); err != nil {
		return err
	}

	if len(m.GetVersions()) == 0 {
		return writeLine(w, "\nNo versions.")
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nVERSION\tSTATE\tCREATED\tCREATED BY\tDELETED/DESTROYED\n")
	for _, v := range m.GetVersions() {
		gone := formatTime(v.GetDestroyedAt())
		if gone == "" {
			gone = formatTime(v.GetDeletedAt())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.GetVersion(), stateName(v.GetState()),
			orDash(formatTime(v.GetCreatedAt())), orDash(printable(v.GetCreatedBy())), orDash(gone))
	}
	return flush(tw)
}

// writeMetadataDeleted renders the removal of a secret and all its versions.
func writeMetadataDeleted(w io.Writer, format, path string) error {
	if encoded(format) {
		return writeDoc(w, format, deletedDoc{Path: path, Deleted: true})
	}
	return writeLine(w, "deleted %s and all its versions", printable(path))
}

func versionOrDash(v int64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatInt(v, 10)
}
