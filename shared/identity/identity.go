// Package identity holds SPIKE's SPIFFE ID conventions, so that every
// program derives the same IDs from a trust domain.
package identity

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "spike.local"

// Nexus returns the SPIFFE ID of Nexus in td.
func Nexus(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "spike", "nexus")
}

// Keeper returns the SPIFFE ID of the Keeper called name in td.
func Keeper(td spiffeid.TrustDomain, name string) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "spike", "keeper", name)
}

// keeperPrefix is the path every Keeper's ID starts with.
const keeperPrefix = "/spike/keeper/"

// IsKeeper reports whether id is a Keeper's ID in td: spike/keeper/<name>
// with one non-empty name segment.
func IsKeeper(td spiffeid.TrustDomain, id spiffeid.ID) bool {
	name, ok := strings.CutPrefix(id.Path(), keeperPrefix)
	return ok && id.MemberOf(td) && name != "" && !strings.Contains(name, "/")
}

// Pilot returns the SPIFFE ID of the admin CLI in td.
func Pilot(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "spike", "pilot")
}

// TrustDomain parses a trust domain name, falling back to
// DefaultTrustDomain when name is empty.
func TrustDomain(name string) (spiffeid.TrustDomain, error) {
	if name == "" {
		name = DefaultTrustDomain
	}
	return spiffeid.TrustDomainFromString(name)
}
