// Command spike-devca mints development SVIDs for the local SPIKE stack. It
// keeps a CA in a directory (created on first use) and writes an SVID, its
// key and the trust bundle for a SPIFFE ID into another directory. With
// -host instead of -id it writes a TLS server certificate for those host
// names (server.pem, server-key.pem and the CA's ca.pem), e.g. for
// PostgreSQL; a CA created for it gets the trust domain -td.
//
//	spike-devca -ca .spike/ca -id spiffe://spike.local/spike/nexus -out .spike/svid/nexus
//	spike-devca -ca .spike/pg/ca -td db.spike.local -host 127.0.0.1,localhost -out .spike/pg/tls
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
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
	hosts := fl.String("host", "", "comma-separated DNS names and IP addresses: write a TLS server certificate for them instead of an SVID")
	tdFlag := fl.String("td", "spike.local", "with -host: the trust domain of a CA created in -ca")
	if err := fl.Parse(args); err != nil {
		return err
	}
	const usage = "usage: spike-devca -ca DIR -id SPIFFE_ID -out DIR [-ttl 720h]\n" +
		"       spike-devca -ca DIR -host NAME[,NAME...] [-td TRUST_DOMAIN] -out DIR [-ttl 720h]"
	if *caDir == "" || *out == "" || (*idFlag == "") == (*hosts == "") {
		return errors.New(usage)
	}
	if *hosts != "" {
		return serverCert(*caDir, *tdFlag, strings.Split(*hosts, ","), *out, *ttl, stdout)
	}
	id, err := spiffeid.FromString(*idFlag)
	if err != nil {
		return fmt.Errorf("parse -id: %w", err)
	}
	ca, err := loadOrCreate(*caDir, id.TrustDomain())
	if err != nil {
		return err
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

// loadOrCreate loads the CA in dir, or creates one there for td.
func loadOrCreate(dir string, td spiffeid.TrustDomain) (*devca.CA, error) {
	ca, err := devca.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if ca, err = devca.New(td); err == nil {
			err = ca.Save(dir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	return ca, nil
}

// serverCert writes a TLS server certificate for hosts into out.
func serverCert(caDir, tdName string, hosts []string, out string, ttl time.Duration, stdout io.Writer) error {
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return fmt.Errorf("parse -td: %w", err)
	}
	for i, h := range hosts {
		hosts[i] = strings.TrimSpace(h)
		if hosts[i] == "" {
			return errors.New("-host: empty host name")
		}
	}
	ca, err := loadOrCreate(caDir, td)
	if err != nil {
		return err
	}
	if err := ca.WriteServerCert(out, hosts, ttl); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "minted a server certificate for %s into %s\n", strings.Join(hosts, ", "), out)
	return nil
}
