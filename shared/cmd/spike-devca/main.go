// Command spike-devca mints development SVIDs for the local SPIKE stack. It
// keeps a CA in a directory (created on first use) and writes an SVID, its
// key and the trust bundle for a SPIFFE ID into another directory.
//
//	spike-devca -ca .spike/ca -id spiffe://spike.local/spike/nexus -out .spike/svid/nexus
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/devca"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "spike-devca:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("spike-devca", flag.ContinueOnError)
	caDir := fl.String("ca", "", "directory holding the CA (created if empty)")
	idFlag := fl.String("id", "", "SPIFFE ID to mint an SVID for")
	out := fl.String("out", "", "directory to write svid.pem, key.pem and bundle.pem into")
	ttl := fl.Duration("ttl", 30*24*time.Hour, "SVID lifetime")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *caDir == "" || *idFlag == "" || *out == "" {
		return errors.New("usage: spike-devca -ca DIR -id SPIFFE_ID -out DIR [-ttl 720h]")
	}
	id, err := spiffeid.FromString(*idFlag)
	if err != nil {
		return fmt.Errorf("parse -id: %w", err)
	}
	ca, err := devca.Load(*caDir)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = devca.New(id.TrustDomain()); err == nil {
			err = ca.Save(*caDir)
		}
	}
	if err != nil {
		return fmt.Errorf("CA in %s: %w", *caDir, err)
	}
	if ca.TrustDomain() != id.TrustDomain() {
		return fmt.Errorf("the CA in %s is for trust domain %s, not %s", *caDir, ca.TrustDomain(), id.TrustDomain())
	}
	cfg, err := ca.WriteSVID(*out, id, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "minted %s into %s\n", id, cfg.CertFile)
	return nil
}
