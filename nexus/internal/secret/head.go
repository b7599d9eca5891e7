package secret

import (
	"fmt"
	"slices"
	"time"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// State is the state of a retained version.
type State uint8

// The states of a version.
const (
	Active State = iota + 1
	Deleted
	Destroyed
)

// IncarnationSize is the length of a secret's incarnation id.
const IncarnationSize = 16

// Head is everything SPIKE decides on about a secret. Nexus keeps it sealed,
// bound to the secret's path and incarnation, so that none of it can be
// edited, replayed from another secret or carried over to a secret created
// again at the same path. The plain columns in the database are copies;
// Check compares them with the head.
type Head struct {
	// Incarnation is random, made when the secret is created.
	Incarnation []byte
	Current     int64
	Oldest      int64
	// MaxVersions is the secret's own retention (0: the default).
	MaxVersions int32
	CASRequired bool
	// Custom is the custom metadata.
	Custom map[string]string
	// Versions are the retained versions, oldest first.
	Versions []HeadVersion
}

// HeadVersion is what the head knows of one retained version.
type HeadVersion struct {
	Version   int64
	State     State
	CreatedBy string
	// Key is the version's own value key; nil once destroyed.
	Key []byte
}

// Stored is a secret's row as the database returns it: the plain columns
// and the sealed head, which Nexus opens and compares.
type Stored struct {
	Path        string
	Incarnation []byte
	// Head is sealed; nil for a secret last written before heads existed.
	Head        []byte
	Current     int64
	Oldest      int64
	MaxVersions int32
	CASRequired bool
	// LegacyCustom is the separately sealed custom metadata of a secret
	// without a head.
	LegacyCustom []byte
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Row is a stored version's row.
type Row struct {
	Version     int64
	DEKID       []byte
	Sealed      []byte
	CreatedBy   string
	CreatedAt   time.Time
	DeletedAt   *time.Time
	DestroyedAt *time.Time
	// Format is the sealed value's format byte (0 once destroyed).
	Format byte
}

// RowState is the state a row's plain columns say.
func (r Row) RowState() State {
	switch {
	case r.DestroyedAt != nil:
		return Destroyed
	case r.DeletedAt != nil:
		return Deleted
	}
	return Active
}

// Write is what a change stores in one go: the new sealed head with its
// plain copies, and the rows to insert, prune and mark.
type Write struct {
	// Create says the secret's row does not exist yet.
	Create      bool
	Incarnation []byte
	Head        []byte
	Current     int64
	Oldest      int64
	MaxVersions int32
	CASRequired bool
	// Insert is a new version's row, if any.
	Insert *Row
	// Deleted, Undeleted and Destroyed name versions whose rows change.
	Deleted, Undeleted, Destroyed []int64
	// Reseal gives versions new sealed values (all under one data key id),
	// when a head is sealed for a secret written before heads existed. A
	// resealed version has no other change in the same write.
	Reseal []Row
	// Change is what the write does, for the change log that watchers
	// read; 0 for maintenance (adoption, reseal) and for a change that
	// changed nothing.
	Change ChangeKind
}

// Written is what a write returns.
type Written struct {
	// CreatedAt is the new version's creation time, when one was inserted.
	CreatedAt time.Time
}

// NewHead is the head of a secret created now.
func NewHead(incarnation []byte) *Head {
	return &Head{Incarnation: incarnation}
}

// Find returns the version v, if retained.
func (h *Head) Find(v int64) (HeadVersion, bool) {
	i, ok := slices.BinarySearchFunc(h.Versions, v, func(hv HeadVersion, v int64) int {
		return cmpInt(hv.Version, v)
	})
	if !ok {
		return HeadVersion{}, false
	}
	return h.Versions[i], true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Wipe zeroes the version keys the head holds in memory.
func (h *Head) Wipe() {
	for i := range h.Versions {
		clear(h.Versions[i].Key)
	}
}

// Plain returns the copies of the head kept in plain columns, for Write.
func (h *Head) Plain(w *Write) {
	w.Incarnation, w.Current, w.Oldest = h.Incarnation, h.Current, h.Oldest
	w.MaxVersions, w.CASRequired = h.MaxVersions, h.CASRequired
}

// CheckCAS applies check-and-set: cas is the version the writer expects
// (nil: none given).
func (h *Head) CheckCAS(path string, cas *int64) error {
	switch {
	case cas == nil && h.CASRequired:
		return fault.Wrap(fault.FailedPrecondition, ErrCASConflict,
			"check-and-set is required for %s: give the version you expect (it is at version %d)", path, h.Current).Because(fault.CASRequired)
	case cas == nil:
		return nil
	case *cas != h.Current && h.Current == 0:
		return fault.Wrap(fault.FailedPrecondition, ErrCASConflict,
			"check-and-set failed: %s has no version yet, you expected %d", path, *cas).Because(fault.CASMismatch)
	case *cas != h.Current:
		return fault.Wrap(fault.FailedPrecondition, ErrCASConflict,
			"check-and-set failed: %s is at version %d, you expected %d", path, h.Current, *cas).Because(fault.CASMismatch)
	}
	return nil
}

// Add appends a new version written by createdBy under key, and prunes
// what falls out of retention (the effective max_versions). It returns the
// new version number.
func (h *Head) Add(createdBy string, key []byte, retention int32) int64 {
	h.Current++
	h.Versions = append(h.Versions, HeadVersion{Version: h.Current, State: Active, CreatedBy: createdBy, Key: key})
	h.prune(retention)
	return h.Current
}

// prune drops the versions older than retention allows.
func (h *Head) prune(retention int32) {
	if h.Current == 0 {
		return
	}
	oldest := min(max(h.Oldest, 1, h.Current-int64(retention)+1), h.Current)
	h.Oldest = oldest
	i := 0
	for i < len(h.Versions) && h.Versions[i].Version < oldest {
		i++
	}
	h.Versions = slices.Delete(h.Versions, 0, i)
}

// Change deletes, undeletes or destroys the named versions (the current one
// when none), and returns them sorted without duplicates, with the rows to
// mark in w. A version not retained is fault.Invalid; undeleting a destroyed
// version is fault.FailedPrecondition; in both cases nothing changes.
func (h *Head) Change(path string, versions []int64, change VersionChange, w *Write) ([]int64, error) {
	want, err := h.versionSet(path, versions)
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(want))
	for i, v := range want {
		j, ok := slices.BinarySearchFunc(h.Versions, v, func(hv HeadVersion, v int64) int { return cmpInt(hv.Version, v) })
		if !ok {
			return nil, fault.New(fault.Invalid, "versions: version %d of %s does not exist (kept: %s)", v, path, h.kept())
		}
		if change == Undelete && h.Versions[j].State == Destroyed {
			return nil, fault.New(fault.FailedPrecondition, "version %d of %s was destroyed: it cannot be restored", v, path)
		}
		idx[i] = j
	}
	for i, j := range idx {
		hv := &h.Versions[j]
		switch change {
		case Delete:
			if hv.State == Active {
				hv.State = Deleted
				w.Deleted = append(w.Deleted, want[i])
			}
		case Undelete:
			if hv.State == Deleted {
				hv.State = Active
				w.Undeleted = append(w.Undeleted, want[i])
			}
		case Destroy:
			if hv.State != Destroyed {
				hv.State = Destroyed
				clear(hv.Key)
				hv.Key = nil
				w.Destroyed = append(w.Destroyed, want[i])
			}
		default:
			return nil, fmt.Errorf("unknown version change %d", change)
		}
	}
	return want, nil
}

// versionSet validates the versions a caller named against the retained
// range and returns them sorted without duplicates; none means the current
// version.
func (h *Head) versionSet(path string, versions []int64) ([]int64, error) {
	if len(versions) == 0 {
		if h.Current == 0 {
			return nil, fault.New(fault.NotFound, "secret %s has no versions", path)
		}
		return []int64{h.Current}, nil
	}
	out := make([]int64, 0, len(versions))
	for _, v := range versions {
		if v < max(h.Oldest, 1) || v > h.Current {
			return nil, fault.New(fault.Invalid, "versions: version %d of %s does not exist (kept: %s)", v, path, h.kept())
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (h *Head) kept() string {
	if h.Current == 0 {
		return "none"
	}
	return fmt.Sprintf("%d to %d", max(h.Oldest, 1), h.Current)
}

// Update applies a metadata update (its custom metadata in the clear:
// custom, set when u.SetCustomMetadata) and prunes to the new retention.
func (h *Head) Update(u MetadataUpdate, custom map[string]string, retention func(int32) int32) {
	if u.MaxVersions != nil {
		h.MaxVersions = *u.MaxVersions
	}
	if u.CASRequired != nil {
		h.CASRequired = *u.CASRequired
	}
	if u.SetCustomMetadata {
		h.Custom = custom
		if len(custom) == 0 {
			h.Custom = nil
		}
	}
	h.prune(retention(h.MaxVersions))
}

// Check compares a secret's plain columns with its opened head. Any
// difference means the database was changed outside SPIKE.
func (h *Head) Check(s Stored) error {
	if string(h.Incarnation) != string(s.Incarnation) || h.Current != s.Current || h.Oldest != s.Oldest ||
		h.MaxVersions != s.MaxVersions || h.CASRequired != s.CASRequired {
		return ErrTampered(s.Path, "its settings do not match its sealed head")
	}
	if len(h.Versions) > 0 && (h.Versions[0].Version < max(h.Oldest, 1) || h.Versions[len(h.Versions)-1].Version != h.Current) {
		return ErrTampered(s.Path, "its sealed head is inconsistent")
	}
	return nil
}

// CheckRow compares a version's row with the head's entry for it.
func (h *Head) CheckRow(path string, r Row) (HeadVersion, error) {
	hv, ok := h.Find(r.Version)
	switch {
	case !ok:
		return HeadVersion{}, ErrTampered(path, fmt.Sprintf("version %d is not in its sealed head", r.Version))
	case hv.State != r.RowState():
		return HeadVersion{}, ErrTampered(path, fmt.Sprintf("the state of version %d does not match its sealed head", r.Version))
	case hv.CreatedBy != r.CreatedBy:
		return HeadVersion{}, ErrTampered(path, fmt.Sprintf("the writer of version %d does not match its sealed head", r.Version))
	}
	return hv, nil
}

// CheckRows compares all of a secret's rows, oldest first, with the head:
// the same versions, each in the same state.
func (h *Head) CheckRows(path string, rows []Row) error {
	if len(rows) != len(h.Versions) {
		return ErrTampered(path, fmt.Sprintf("it has %d version rows, its sealed head lists %d", len(rows), len(h.Versions)))
	}
	for _, r := range rows {
		if _, err := h.CheckRow(path, r); err != nil {
			return err
		}
	}
	return nil
}

// CheckSpan compares the count and range of a secret's version rows with
// the head: a row outside it (re-inserted after pruning, or left from a
// head rolled back) means tampering.
func (h *Head) CheckSpan(path string, count, lowest, highest int64) error {
	if count != int64(len(h.Versions)) {
		return ErrTampered(path, fmt.Sprintf("it has %d version rows, its sealed head lists %d", count, len(h.Versions)))
	}
	if count > 0 && (lowest != h.Versions[0].Version || highest != h.Versions[len(h.Versions)-1].Version) {
		return ErrTampered(path, "its version rows do not match its sealed head")
	}
	return nil
}

// ErrTampered is the DataLoss error of a secret whose stored state was
// changed outside SPIKE.
func ErrTampered(path, what string) error {
	return fault.New(fault.DataLoss, "secret %s failed authentication: %s (the database was changed outside SPIKE)", path, what)
}
