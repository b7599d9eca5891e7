package devca_test

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/svid"
)

func TestSaveLoadWriteAndVerify(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("spike.local")
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir + "/ca"); err != nil {
		t.Fatal(err)
	}
	loaded, err := devca.Load(dir + "/ca")
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/spike/nexus")
	cfg, err := loaded.WriteSVID(dir+"/nexus", id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := svid.NewSource(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.ID()
	if err != nil || got != id {
		t.Fatalf("source ID = %v, %v; want %v", got, err, id)
	}
	s, _ := src.GetX509SVID()
	// The SVID written with the loaded CA verifies against the original CA's bundle.
	if _, _, err := x509svid.Verify(s.Certificates, ca.Bundle()); err != nil {
		t.Fatalf("verify against original bundle: %v", err)
	}
	other, _ := devca.New(spiffeid.RequireTrustDomainFromString("other.test"))
	if _, _, err := x509svid.Verify(s.Certificates, other.Bundle()); err == nil {
		t.Fatal("SVID verified against another CA's bundle")
	}
}

func TestSourceNeedsConfig(t *testing.T) {
	t.Parallel()
	if _, err := svid.NewSource(t.Context(), svid.Config{CertFile: "x"}); err == nil {
		t.Fatal("NewSource with partial file config succeeded")
	}
}
