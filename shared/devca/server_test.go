package devca_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/devca"
)

// A server certificate verifies against the CA written beside it for its
// DNS names and IP addresses, and for no other name.
func TestWriteServerCert(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(spiffeid.RequireTrustDomainFromString("db.spike.local"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := ca.WriteServerCert(dir, []string{"postgres", "127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devca.ServerCertFile), filepath.Join(dir, devca.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, devca.ServerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, devca.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, tc := range []struct {
		host string
		ok   bool
	}{{"postgres", true}, {"127.0.0.1", true}, {"db", false}, {"127.0.0.2", false}} {
		_, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if (err == nil) != tc.ok {
			t.Errorf("verify for %s: %v, want ok=%v", tc.host, err, tc.ok)
		}
	}
	if err := ca.WriteServerCert(dir, nil, time.Hour); err == nil {
		t.Error("a server certificate for no host was written")
	}
}
