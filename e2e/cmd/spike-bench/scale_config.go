package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/spike-dev/spike/shared/svid"
)

// modeScale is -mode scale: the cost of requests as the data grows.
const modeScale = "scale"

// Bounds of the scale mode's settings.
const (
	maxScaleSecrets  = 10_000_000
	maxScalePolicies = 100_000
	maxWriters       = 1024
	// scaleConcurrency is the callers per cell unless -concurrency says.
	scaleConcurrency = 16
)

// scaleConfig is what -mode scale measures (see scale.go).
type scaleConfig struct {
	// Sizes are the numbers of secrets measured at, in increasing order;
	// each at least one directory (scaleDirSize secrets).
	Sizes []int
	// Policies are the numbers of policies measured at (the workload's own
	// included) with Sizes' largest number of secrets, in increasing
	// order; empty measures none.
	Policies []int
	// Writers is the number of concurrent callers writing the secrets and
	// policies.
	Writers int
	// AdminTokenFile and AdminSVID are what policies are written with: the
	// admin token and the SVID it goes with (Pilot's).
	AdminTokenFile string
	AdminSVID      svid.Config
}

// scaleFlags are the flags of the scale mode, registered on a flag set.
type scaleFlags struct {
	fl                                  *flag.FlagSet
	mode, sizes, policies               *string
	writers                             *int
	adminToken, adminCert, adminKey, ab *string
}

func newScaleFlags(fl *flag.FlagSet) scaleFlags {
	return scaleFlags{
		fl:         fl,
		mode:       fl.String("mode", "", `"scale": measure get, put and list as secrets and policies grow (-sizes, -policies) instead of against raw PostgreSQL`),
		sizes:      fl.String("sizes", "10000,100000,1000000", "scale mode: comma-separated numbers of secrets to write and measure at, increasing"),
		policies:   fl.String("policies", "1000,10000", "scale mode: comma-separated numbers of policies to measure at with the most secrets, increasing; empty: none"),
		writers:    fl.Int("writers", 64, "scale mode: concurrent callers writing the secrets"),
		adminToken: fl.String("admin-token-file", "", "scale mode: the admin token that writes the policies"),
		adminCert:  fl.String("admin-svid-cert", "", "scale mode: the SVID certificate the admin token goes with (Pilot's)"),
		adminKey:   fl.String("admin-svid-key", "", "scale mode: that SVID's key"),
		ab:         fl.String("admin-trust-bundle", "", "scale mode: the trust bundle for that SVID"),
	}
}

// apply reads the scale flags into cfg.Scale (nil unless -mode scale).
// The scale mode measures at one concurrency (16 unless -concurrency is
// given), over HTTP/2.
func (f scaleFlags) apply(cfg *config) error {
	switch *f.mode {
	case "":
		return nil
	case modeScale:
	default:
		return fmt.Errorf("-mode: %q is not %q or empty", *f.mode, modeScale)
	}
	sc := &scaleConfig{
		Writers:        *f.writers,
		AdminTokenFile: *f.adminToken,
		AdminSVID:      svid.Config{CertFile: *f.adminCert, KeyFile: *f.adminKey, BundleFile: *f.ab},
	}
	given := map[string]bool{}
	f.fl.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	if !given["concurrency"] {
		cfg.Concurrency = []int{scaleConcurrency}
	}
	if !given["protocols"] {
		cfg.Protocols = []string{protoH2}
	}
	var errs []error
	var err error
	if sc.Sizes, err = parseIncreasing(*f.sizes, scaleDirSize, maxScaleSecrets); err != nil {
		errs = append(errs, fmt.Errorf("-sizes: %w", err))
	} else if len(sc.Sizes) == 0 {
		errs = append(errs, errors.New("-sizes: give at least one number of secrets"))
	}
	if sc.Policies, err = parseIncreasing(*f.policies, 2, maxScalePolicies); err != nil {
		errs = append(errs, fmt.Errorf("-policies: %w", err))
	}
	if sc.Writers < 1 || sc.Writers > maxWriters {
		errs = append(errs, fmt.Errorf("-writers: must be 1 to %d", maxWriters))
	}
	if len(sc.Policies) > 0 && (sc.AdminTokenFile == "" || sc.AdminSVID.CertFile == "" ||
		sc.AdminSVID.KeyFile == "" || sc.AdminSVID.BundleFile == "") {
		errs = append(errs, errors.New("-policies: writing policies needs -admin-token-file, -admin-svid-cert, -admin-svid-key and -admin-trust-bundle"))
	}
	if len(cfg.Concurrency) != 1 {
		errs = append(errs, errors.New("-concurrency: the scale mode measures at one concurrency"))
	}
	if len(cfg.Protocols) != 1 || cfg.Protocols[0] != protoH2 {
		errs = append(errs, errors.New("-protocols: the scale mode calls over h2 only"))
	}
	if cfg.FloorURL != "" || cfg.Profile != "" {
		errs = append(errs, errors.New("-floor and -profile: not in the scale mode"))
	}
	cfg.Scale = sc
	return errors.Join(errs...)
}

// parseIncreasing reads a comma-separated list of strictly increasing
// numbers from lowest to highest ("" is none), allowing thousands written
// as 10_000 or 1e6.
func parseIncreasing(s string, lowest, highest int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var list []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ReplaceAll(strings.TrimSpace(f), "_", "")
		n, err := strconv.Atoi(f)
		if err != nil {
			v, ferr := strconv.ParseFloat(f, 64)
			if ferr != nil || v != float64(int(v)) {
				return nil, fmt.Errorf("%q is not a whole number", f)
			}
			n = int(v)
		}
		if n < lowest || n > highest {
			return nil, fmt.Errorf("%d is not from %d to %d", n, lowest, highest)
		}
		if len(list) > 0 && n <= list[len(list)-1] {
			return nil, fmt.Errorf("%d does not follow %d: give increasing numbers", n, list[len(list)-1])
		}
		list = append(list, n)
	}
	return list, nil
}
