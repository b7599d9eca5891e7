// Package devca is a small SPIFFE certificate authority that mints X.509
// SVIDs in-process. Tests use it to get real SVIDs without SPIRE, and the
// local development stack uses it to mint SVIDs into files. It is not meant
// for production: its key sits in a file.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/spike-dev/spike/shared/svid"
)

// CA mints SVIDs for one trust domain.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

const caValidity = 10 * 365 * 24 * time.Hour

// New creates a CA with a fresh P-256 key for td.
func New(td spiffeid.TrustDomain) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"SPIKE dev CA"}, CommonName: td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{td: td, cert: cert, key: key}, nil
}

// Files in a CA directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// Load reads a CA saved by Save from dir.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	certBlock, _ := pem.Decode(certPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if certBlock == nil || keyBlock == nil {
		return nil, fmt.Errorf("CA files in %s are not PEM", dir)
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	if len(cert.URIs) != 1 {
		return nil, errors.New("CA certificate has no trust domain URI")
	}
	id, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("CA trust domain: %w", err)
	}
	return &CA{td: id.TrustDomain(), cert: cert, key: key}, nil
}

// Save writes the CA certificate and key (mode 0600) into dir.
func (ca *CA) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create CA directory: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	if err := writePEM(filepath.Join(dir, caKeyFile), "PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, caCertFile), "CERTIFICATE", ca.cert.Raw, 0o644)
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle returns the trust bundle that verifies SVIDs minted by ca.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// Mint returns a new X509-SVID for id, valid for ttl. The ID may belong to
// another trust domain than the CA's; such an SVID will not verify against
// a bundle of that other domain, which is what cross-domain tests need.
func (ca *CA) Mint(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate SVID key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"SPIKE dev"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("create SVID for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse SVID: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil
}

// Source mints an SVID for id (valid for a day) and returns an in-memory
// source serving it with ca's bundle.
func (ca *CA) Source(id spiffeid.ID) (*svid.Source, error) {
	s, err := ca.Mint(id, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	return svid.Static(s, ca.Bundle()), nil
}

// Files written by WriteSVID.
const (
	SVIDFile   = "svid.pem"
	KeyFile    = "key.pem"
	BundleFile = "bundle.pem"
)

// WriteSVID mints an SVID for id and writes it, its key (mode 0600) and the
// trust bundle into dir. It returns the svid.Config that loads them.
func (ca *CA) WriteSVID(dir string, id spiffeid.ID, ttl time.Duration) (svid.Config, error) {
	s, err := ca.Mint(id, ttl)
	if err != nil {
		return svid.Config{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return svid.Config{}, fmt.Errorf("create SVID directory: %w", err)
	}
	certs, key, err := s.Marshal()
	if err != nil {
		return svid.Config{}, fmt.Errorf("encode SVID: %w", err)
	}
	bundle, err := ca.Bundle().Marshal()
	if err != nil {
		return svid.Config{}, fmt.Errorf("encode bundle: %w", err)
	}
	cfg := svid.Config{
		CertFile:   filepath.Join(dir, SVIDFile),
		KeyFile:    filepath.Join(dir, KeyFile),
		BundleFile: filepath.Join(dir, BundleFile),
	}
	if err := writeFile(cfg.KeyFile, key, 0o600); err != nil {
		return svid.Config{}, err
	}
	if err := writeFile(cfg.CertFile, certs, 0o644); err != nil {
		return svid.Config{}, err
	}
	if err := writeFile(cfg.BundleFile, bundle, 0o644); err != nil {
		return svid.Config{}, err
	}
	return cfg, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n, nil
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

// writeFile replaces path atomically so readers never see a half-written
// key or certificate.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
