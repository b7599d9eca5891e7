// Package svid provides a program's X.509 SVID and trust bundle, either from
// the SPIFFE Workload API (a SPIRE agent) or from PEM files for development
// and tests.
package svid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

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
// set, and from PEM files otherwise. Both follow rotations: the Workload
// API pushes them, and a file source reads its files again when they
// change.
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
	f := &fileSource{cfg: cfg, recheck: fileRecheck, now: time.Now}
	if err := f.load(); err != nil {
		return nil, err
	}
	f.stamps, _ = f.stat()
	f.checked = f.now()
	return &Source{svids: f, bundles: f}, nil
}

// fileRecheck is how often a file source looks at its files again.
const fileRecheck = time.Second

// fileSource reads the SVID and the trust bundle from PEM files, and reads
// them again when they change on disk (rotated by spiffe-helper,
// cert-manager or `make svid`): when asked, at most once per recheck, and
// only when a file's size or modification time differs. A reload that
// fails (a file half written, a key that does not match its certificate)
// keeps the last good SVID and bundle and is tried again at the next
// recheck, so a rotation in progress never breaks a running program.
type fileSource struct {
	cfg     Config
	recheck time.Duration
	now     func() time.Time

	mu      sync.Mutex
	svid    *x509svid.SVID
	bundle  *x509bundle.Bundle
	stamps  [3]fileStamp
	checked time.Time
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// load reads the three files.
func (f *fileSource) load() error {
	s, err := x509svid.Load(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("load SVID from %s and %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
	}
	b, err := x509bundle.Load(s.ID.TrustDomain(), f.cfg.BundleFile)
	if err != nil {
		return fmt.Errorf("load trust bundle from %s: %w", f.cfg.BundleFile, err)
	}
	f.svid, f.bundle = s, b
	return nil
}

// stat stamps the three files.
func (f *fileSource) stat() ([3]fileStamp, error) {
	var st [3]fileStamp
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.BundleFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return st, err
		}
		st[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	return st, nil
}

// current returns the SVID and bundle, reloading them first when the files
// changed and a recheck is due.
func (f *fileSource) current() (*x509svid.SVID, *x509bundle.Bundle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.checked) >= f.recheck {
		f.checked = now
		if st, err := f.stat(); err == nil && st != f.stamps {
			old, oldBundle := f.svid, f.bundle
			if err := f.load(); err != nil {
				f.svid, f.bundle = old, oldBundle
			} else {
				f.stamps = st
			}
		}
	}
	return f.svid, f.bundle
}

func (f *fileSource) GetX509SVID() (*x509svid.SVID, error) {
	s, _ := f.current()
	return s, nil
}

func (f *fileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	_, b := f.current()
	return b.GetX509BundleForTrustDomain(td)
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
