package client

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// DefaultNexusURL is where the local dev stack's Nexus listens.
const DefaultNexusURL = "https://127.0.0.1:8553"

// Config says which Nexus to call and where the caller's SVID comes from.
type Config struct {
	// NexusURL is Nexus's https URL.
	NexusURL string
	// NexusID is the only server SPIFFE ID the client accepts. Zero means
	// spiffe://<the caller's trust domain>/spike/nexus.
	NexusID spiffeid.ID
	// SVID says where the caller's X.509 SVID and trust bundle come from:
	// the Workload API (EndpointSocket) or PEM files, which are read again
	// when they change on disk. Ignored when Source is set.
	SVID svid.Config
	// Source, when set, supplies the SVID instead of SVID; the client
	// uses it but does not close it.
	Source *svid.Source
	// Retry tunes the retries of single calls (rpcclient's defaults when
	// zero: 4 retries with backoff from 100ms to 2s).
	Retry rpcclient.Options
}

// The environment variables ConfigFromEnv reads, besides the SVID's
// (SPIFFE_ENDPOINT_SOCKET, or SPIKE_SVID_CERT, SPIKE_SVID_KEY and
// SPIKE_TRUST_BUNDLE).
const (
	EnvNexusURL    = "SPIKE_NEXUS_URL"
	EnvTrustDomain = "SPIKE_TRUST_DOMAIN"
	EnvNexusID     = "SPIKE_NEXUS_ID"
)

// ConfigFromEnv reads the configuration through getenv (os.Getenv in a
// program): SPIKE_NEXUS_URL (default DefaultNexusURL), SPIKE_TRUST_DOMAIN
// (default spike.local), SPIKE_NEXUS_ID (default
// spiffe://<trust domain>/spike/nexus), and the SVID from
// SPIFFE_ENDPOINT_SOCKET (the Workload API) or, when it is not set, from
// the PEM files SPIKE_SVID_CERT, SPIKE_SVID_KEY and SPIKE_TRUST_BUNDLE.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{NexusURL: getenv(EnvNexusURL), SVID: svid.ConfigFromEnv(getenv)}
	if cfg.NexusURL == "" {
		cfg.NexusURL = DefaultNexusURL
	}
	var errs []error
	td, err := identity.TrustDomain(getenv(EnvTrustDomain))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvTrustDomain, err))
	} else {
		cfg.NexusID = identity.Nexus(td)
	}
	if s := getenv(EnvNexusID); s != "" {
		if cfg.NexusID, err = spiffeid.FromString(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvNexusID, err))
		}
	}
	if err := checkURL(cfg.NexusURL); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvNexusURL, err))
	}
	if cfg.SVID.EndpointSocket == "" && (cfg.SVID.CertFile == "" || cfg.SVID.KeyFile == "" || cfg.SVID.BundleFile == "") {
		errs = append(errs, errors.New("no SVID configured: set SPIFFE_ENDPOINT_SOCKET, or SPIKE_SVID_CERT, SPIKE_SVID_KEY and SPIKE_TRUST_BUNDLE"))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// checkURL accepts an https URL with a host and nothing after the path.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an https URL", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q: a Nexus URL has no user, query or fragment", s)
	}
	return nil
}
