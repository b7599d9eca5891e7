// Package svid provides a program's X.509 SVID and trust bundle, either from
// the SPIFFE Workload API (a SPIRE agent) or from PEM files for development
// and tests.
package svid

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Config says where the SVID comes from. EndpointSocket wins when set;
// otherwise all three files are required.
type Config struct {
	// EndpointSocket is the Workload API address, e.g. unix:///run/spire/agent.sock.
	EndpointSocket string
	// CertFile holds the SVID certificate chain (PEM), leaf first.
	CertFile string
	// KeyFile holds the SVID private key (PEM, PKCS#8).
	KeyFile string
	// BundleFile holds the trust bundle's CA certificates (PEM).
	BundleFile string
}

// ConfigFromEnv reads the SVID configuration from the standard variables.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		EndpointSocket: getenv("SPIFFE_ENDPOINT_SOCKET"),
		CertFile:       getenv("SPIKE_SVID_CERT"),
		KeyFile:        getenv("SPIKE_SVID_KEY"),
		BundleFile:     getenv("SPIKE_TRUST_BUNDLE"),
	}
}

// Source supplies an X.509 SVID and trust bundles. It implements
// x509svid.Source and x509bundle.Source.
type Source struct {
	svids   x509svid.Source
	bundles x509bundle.Source
	closer  io.Closer
}

// NewSource returns a Source from the Workload API when cfg.EndpointSocket is
// set, and from PEM files otherwise. A Workload API source follows SVID
// rotations; a file source is read once.
func NewSource(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.EndpointSocket != "" {
		src, err := workloadapi.NewX509Source(ctx,
			workloadapi.WithClientOptions(workloadapi.WithAddr(cfg.EndpointSocket)))
		if err != nil {
			return nil, fmt.Errorf("fetch SVID from workload API at %s: %w", cfg.EndpointSocket, err)
		}
		return &Source{svids: src, bundles: src, closer: src}, nil
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.BundleFile == "" {
		return nil, errors.New("no SVID configured: set SPIFFE_ENDPOINT_SOCKET, or SPIKE_SVID_CERT, SPIKE_SVID_KEY and SPIKE_TRUST_BUNDLE")
	}
	s, err := x509svid.Load(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load SVID from %s and %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	b, err := x509bundle.Load(s.ID.TrustDomain(), cfg.BundleFile)
	if err != nil {
		return nil, fmt.Errorf("load trust bundle from %s: %w", cfg.BundleFile, err)
	}
	return Static(s, b), nil
}

// Static returns a Source that always returns s and b.
func Static(s *x509svid.SVID, b *x509bundle.Bundle) *Source {
	return &Source{svids: staticSVID{s}, bundles: b}
}

// GetX509SVID returns the current SVID.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.svids.GetX509SVID() }

// GetX509BundleForTrustDomain returns the bundle of td.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundles.GetX509BundleForTrustDomain(td)
}

// ID returns the SPIFFE ID of the current SVID.
func (s *Source) ID() (spiffeid.ID, error) {
	v, err := s.svids.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}, err
	}
	return v.ID, nil
}

// Close releases the Workload API connection, if any.
func (s *Source) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

type staticSVID struct{ svid *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
