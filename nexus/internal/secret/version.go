package secret

import (
	"errors"
	"time"
)

// ErrCASConflict is in the chain of the error a write returns when the
// secret's current version is not the one the writer expected.
var ErrCASConflict = errors.New("check-and-set conflict")

// Version is one stored version of a secret.
type Version struct {
	Path    string
	Version int64
	// DEKID names the data key that sealed the value.
	DEKID []byte
	// Sealed is the value sealed under the data key, bound to Path and
	// Version; nil once destroyed.
	Sealed []byte
	// CreatedBy is the SPIFFE ID of the writer.
	CreatedBy string
	// CreatedAt is set by the database.
	CreatedAt time.Time
	// DeletedAt is set when the version was soft-deleted.
	DeletedAt *time.Time
	// DestroyedAt is set when the version's data was wiped.
	DestroyedAt *time.Time
}

// Read is a version as read, with what a writer needs to know about its
// secret at that moment.
type Read struct {
	Version
	// Current is the secret's newest version.
	Current int64
	// CASRequired is the secret's check-and-set setting.
	CASRequired bool
}

// VersionChange is what a delete, undelete or destroy does to each version
// it names.
type VersionChange int

// The changes a request can make to existing versions.
const (
	// Delete soft-deletes: the version reads as deleted until undeleted.
	Delete VersionChange = iota + 1
	// Undelete restores soft-deleted versions.
	Undelete
	// Destroy wipes the sealed data for good.
	Destroy
)

// Metadata describes a secret without its data.
type Metadata struct {
	Path           string
	CurrentVersion int64
	OldestVersion  int64
	// MaxVersions is the secret's own setting; 0 means the default.
	MaxVersions int32
	// EffectiveMaxVersions is the retention that applies.
	EffectiveMaxVersions int32
	CASRequired          bool
	// CustomMetadata is sealed by Nexus and bound to Path; nil when unset.
	CustomMetadata []byte
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Versions are the retained versions, oldest first, without data.
	Versions []Version
}

// MetadataUpdate changes a secret's settings; nil fields stay as they are.
type MetadataUpdate struct {
	Path string
	// MaxVersions, 0 to MaxMaxVersions (0: the default). Lowering it
	// deletes the versions that fall out of the window, in the same
	// transaction.
	MaxVersions *int32
	CASRequired *bool
	// SetCustomMetadata says to replace the custom metadata with
	// CustomMetadata (sealed by Nexus, nil to clear).
	SetCustomMetadata bool
	CustomMetadata    []byte
}

// Listing asks for one page of secret paths.
type Listing struct {
	// Prefix selects paths that start with it, byte for byte. In directory
	// mode it must be empty or end with "/".
	Prefix string
	// Recursive lists every path below Prefix; otherwise the listing is one
	// level deep: each entry is Prefix plus one segment, ending with "/"
	// when it is a directory holding more secrets.
	Recursive bool
	// IncludeDeleted lists secrets whose retained versions are all
	// deleted (not destroyed) too.
	IncludeDeleted bool
	// After is the last entry of the previous page ("" for the first).
	After string
	// Limit is the page size.
	Limit int
}
