package policy

import (
	"fmt"
	"strings"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

// Perm is a set of permissions on secrets, one bit each.
type Perm uint8

// The permissions a policy may grant. The server package decides which
// permissions each RPC needs.
const (
	// Read allows reading a secret's data.
	Read Perm = 1 << iota
	// List allows seeing a secret's path in listings.
	List
	// Write allows creating new versions of a secret.
	Write
	// Delete allows soft-deleting and restoring versions.
	Delete
	// Destroy allows wiping versions for good.
	Destroy
	// Meta allows reading and changing a secret's metadata and settings.
	Meta
)

// All is every permission.
const All = Read | List | Write | Delete | Destroy | Meta

// permNames are the names of the permissions, in canonical order, which is
// also the order of their bits.
var permNames = [...]string{"read", "list", "write", "delete", "destroy", "meta"}

// validPermNames lists the names in error messages.
var validPermNames = strings.Join(permNames[:], ", ")

// ParsePerms returns the set of the named permissions. Names are
// case-insensitive and trimmed of spaces; duplicates are allowed. An empty
// list or an unknown name is a fault.Invalid error.
func ParsePerms(names []string) (Perm, error) {
	if len(names) == 0 {
		return 0, fault.New(fault.Invalid, "permissions: must not be empty; valid: %s", validPermNames)
	}
	var p Perm
	for _, name := range names {
		q := permNamed(strings.ToLower(strings.TrimSpace(name)))
		if q == 0 {
			return 0, fault.New(fault.Invalid, "permissions: unknown permission %q; valid: %s", name, validPermNames)
		}
		p |= q
	}
	return p, nil
}

// permNamed returns the permission with the canonical name, or 0.
func permNamed(name string) Perm {
	for i, n := range permNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

// Names returns the names of the permissions in p in canonical order (read,
// list, write, delete, destroy, meta), or nil if p holds none.
func (p Perm) Names() []string {
	var names []string
	for i, n := range permNames {
		if p&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return names
}

// Has reports whether p holds every permission in q.
func (p Perm) Has(q Perm) bool { return p&q == q }

// String returns the names of the permissions in p separated by commas, such
// as "read,list", or "none". Bits that are no permission show in hex.
func (p Perm) String() string {
	names := p.Names()
	if extra := p &^ All; extra != 0 {
		names = append(names, fmt.Sprintf("%#x", uint8(extra)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}
