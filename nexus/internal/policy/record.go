package policy

import "time"

// Record is a policy as stored: its name and its content sealed by Nexus,
// bound to the name.
type Record struct {
	Name      string
	Sealed    []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Records is every stored policy with the generation and sealed manifest
// they belong to, read from one snapshot.
type Records struct {
	// Rows are sorted by name.
	Rows       []Record
	Generation int64
	// Manifest is the sealed policy manifest, nil when none exists yet
	// (no policy changed since the manifest was introduced).
	Manifest []byte
}

// ManifestFunc computes the sealed policy manifest a policy change leaves
// behind. It runs inside the change's transaction, after the change, while
// the transaction holds the policy generation and manifest rows locked:
// old is the sealed manifest before the change (nil when none exists yet),
// rows are every policy row as the change leaves them, and gen is the
// generation the change creates. An error rolls the change back.
type ManifestFunc func(old []byte, rows []Record, gen int64) ([]byte, error)
