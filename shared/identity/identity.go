// Package identity holds SPIKE's SPIFFE ID conventions, so that every
// program derives the same IDs from a trust domain.
package identity

import "github.com/spiffe/go-spiffe/v2/spiffeid"

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
