package cli

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/svid"
)

// defaultNexusURL is where the local stack's Nexus listens.
const defaultNexusURL = "https://127.0.0.1:8553"

// Config says which Nexus spike talks to and how it proves who it is.
type Config struct {
	// NexusURL is the base URL of the Nexus API (https).
	NexusURL string
	// NexusID is the SPIFFE ID Nexus must present.
	NexusID spiffeid.ID
	// TrustDomain is the SPIFFE trust domain of the installation.
	TrustDomain spiffeid.TrustDomain
	// SVID says where Pilot's own SVID and trust bundle come from.
	SVID svid.Config
	// TokenFile is where the admin token is kept. Empty when neither
	// SPIKE_TOKEN_FILE nor HOME is set: then no token is sent, and login
	// cannot save one.
	TokenFile string
}

// LoadConfig reads SPIKE_NEXUS_URL, SPIKE_NEXUS_ID, SPIKE_TRUST_DOMAIN,
// SPIKE_TOKEN_FILE (or HOME) and the SVID variables through getenv, applying
// the defaults of the local stack.
func LoadConfig(getenv func(string) string) (Config, error) {
	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		return Config{}, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err)
	}

	nexusURL := getenv("SPIKE_NEXUS_URL")
	if nexusURL == "" {
		nexusURL = defaultNexusURL
	}
	if err := checkNexusURL(nexusURL); err != nil {
		return Config{}, fmt.Errorf("SPIKE_NEXUS_URL: %w", err)
	}

	nexusID := identity.Nexus(td)
	if s := getenv("SPIKE_NEXUS_ID"); s != "" {
		nexusID, err = spiffeid.FromString(s)
		if err != nil {
			return Config{}, fmt.Errorf("SPIKE_NEXUS_ID: %w", err)
		}
	}

	return Config{
		NexusURL:    nexusURL,
		NexusID:     nexusID,
		TrustDomain: td,
		SVID:        svid.ConfigFromEnv(getenv),
		TokenFile:   tokenFile(getenv),
	}, nil
}

// defaultTokenFile is where the admin token is kept, relative to HOME.
const defaultTokenFile = ".spike/token"

// tokenFile returns SPIKE_TOKEN_FILE, or ~/.spike/token, or "" when
// neither it nor HOME is set.
func tokenFile(getenv func(string) string) string {
	if f := getenv("SPIKE_TOKEN_FILE"); f != "" {
		return f
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, filepath.FromSlash(defaultTokenFile))
	}
	return ""
}

// checkNexusURL accepts an absolute https URL without query or fragment;
// Connect appends the procedure path to it.
func checkNexusURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("%q is not an https URL", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not have a query or fragment")
	}
	return nil
}
