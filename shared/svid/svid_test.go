package svid_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/svid"
)

var td = spiffeid.RequireTrustDomainFromString("spike.local")

// SVID files replaced on disk (as spiffe-helper rotates them) are used by
// the next TLS handshake of a running program, without a restart; files
// caught half written keep the last good SVID in use.
func TestFileSourceFollowsRotation(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := spiffeid.RequireFromPath(td, "/app/web")
	cfg, err := ca.WriteSVID(dir, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := svid.NewSource(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svid.SetRecheck(src, 0)

	// A server that answers with the serial number of the client's
	// certificate, over mutual TLS.
	serverSrc, err := ca.Source(spiffeid.RequireFromPath(td, "/spike/nexus"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", mtls.ServerConfig(serverSrc, tlsconfig.AuthorizeAny()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + ln.Addr().String()
	serial := func() string {
		t.Helper()
		// A new client each time: a new handshake.
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: mtls.ClientConfig(src, tlsconfig.AuthorizeAny()), ForceAttemptHTTP2: true}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := serial()
	if cur, _ := src.GetX509SVID(); cur.Certificates[0].SerialNumber.String() != first {
		t.Fatalf("the server saw serial %s, the source holds %s", first, cur.Certificates[0].SerialNumber)
	}
	// Rotated: a new certificate and key in place of the old.
	if _, err := ca.WriteSVID(dir, id, time.Hour); err != nil {
		t.Fatal(err)
	}
	second := serial()
	if second == first {
		t.Fatalf("after the files were replaced, the handshake still used serial %s", first)
	}
	// Half written: the certificate file holds garbage. The last good
	// SVID stays in use.
	if err := os.WriteFile(filepath.Join(dir, devca.SVIDFile), []byte("-----BEGIN CERT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != second {
		t.Errorf("with a half-written certificate file, the handshake used serial %s, want the last good %s", got, second)
	}
	// Written in full again: taken.
	if _, err := ca.WriteSVID(dir, id, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got == second || got == first {
		t.Errorf("after the rotation completed, the handshake used serial %s, an old one", got)
	}
}
