package secret

import "slices"

// ChangeKind says what a committed change did to a secret. The values are
// those of the API's ChangeKind and of the change log's kind column.
type ChangeKind int16

// The kinds of change.
const (
	// ChangeWritten: a new version (put, patch or rollback).
	ChangeWritten ChangeKind = iota + 1
	// ChangeDeleted: versions were soft-deleted.
	ChangeDeleted
	// ChangeUndeleted: soft-deleted versions were restored.
	ChangeUndeleted
	// ChangeDestroyed: versions were destroyed.
	ChangeDestroyed
	// ChangeMetadata: settings or custom metadata changed.
	ChangeMetadata
	// ChangeRemoved: the secret and all its versions were removed.
	ChangeRemoved
)

// Changed returns the versions a write's change touched (w.Change): the
// new one, or the marked ones; none for settings.
func (w Write) Changed() []int64 {
	switch w.Change {
	case ChangeWritten:
		if w.Insert != nil {
			return []int64{w.Insert.Version}
		}
	case ChangeDeleted:
		return slices.Clone(w.Deleted)
	case ChangeUndeleted:
		return slices.Clone(w.Undeleted)
	case ChangeDestroyed:
		return slices.Clone(w.Destroyed)
	}
	return []int64{}
}

// Valid reports whether k is a known kind.
func (k ChangeKind) Valid() bool { return k >= ChangeWritten && k <= ChangeRemoved }
