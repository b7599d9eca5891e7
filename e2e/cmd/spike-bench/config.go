package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/svid"
)

const (
	defaultNexusURL = "https://127.0.0.1:8553"
	// maxValueSize keeps a value and its key under Nexus's 512 KiB limit
	// on a secret's data.
	maxValueSize   = 512<<10 - len(valueKey)
	maxConcurrency = 4096
)

// config is what one benchmark run measures, and against what.
type config struct {
	NexusURL string
	NexusID  spiffeid.ID
	SVID     svid.Config
	// TokenFile holds the admin token sent as a bearer token; "" sends
	// none, so the caller must be a workload that a policy lets read and
	// write under pathPrefix.
	TokenFile   string
	DatabaseURL string
	Concurrency []int
	Duration    time.Duration
	ValueSize   int
	Paths       int
	// Out is the Markdown report's path; "" writes none.
	Out string
	// NexusMetrics and KeeperMetrics are the programs' Prometheus
	// endpoints; "" leaves their memory and CPU unmeasured.
	NexusMetrics, KeeperMetrics string
	// Profile is where CPU profiles of the SPIKE cells go; "" takes none.
	Profile string
	// FloorURL is the protocol floor (spike-nexus floor), called with the
	// same client as Nexus; "" measures no floor. FloorMetrics is its
	// /metrics URL, for its CPU.
	FloorURL, FloorMetrics string
	// Protocols are the HTTP versions SPIKE and the floor are called over,
	// in order: protoH2, protoH1.
	Protocols []string
	// Ops are the operations measured, in order: "get", "put".
	Ops []string
	// Raw measures the raw pgx reference beside each SPIKE cell.
	Raw bool
	// Scale is set by -mode scale, which measures as the data grows
	// instead (scale.go).
	Scale *scaleConfig
	// PGStatsURL is a superuser connection that reads pg_stat_statements
	// and the WAL position, PGStatsDB the database whose statements
	// count; "" reads none.
	PGStatsURL, PGStatsDB string
}

// The HTTP versions spike-bench can call over.
const (
	protoH2 = "h2"
	protoH1 = "h1"
)

// parseConfig reads the flags in args. Flags left unset fall back to the
// variables the other SPIKE programs read (through getenv), so the
// database password never needs to be on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fl := flag.NewFlagSet("spike-bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	nexusURL := fl.String("nexus", "", "Nexus URL (default $SPIKE_NEXUS_URL, or "+defaultNexusURL+")")
	tokenFile := fl.String("token-file", "", "file holding the admin token (default $SPIKE_TOKEN_FILE); none: call as a workload")
	dbURL := fl.String("database-url", "", "PostgreSQL URL for the raw reference (default $SPIKE_DATABASE_URL)")
	conc := fl.String("concurrency", "1,16,64", "comma-separated numbers of concurrent callers, one set of cells each")
	dur := fl.Duration("duration", 5*time.Second, "how long each cell runs")
	size := fl.Int("value-size", 256, "bytes per secret value (and per raw bytea)")
	paths := fl.Int("paths", 100, "distinct secret paths (and raw rows) read and written")
	out := fl.String("out", "docs/benchmarks.md", "Markdown report to write; empty: none")
	nexusMetrics := fl.String("nexus-metrics", "", "Nexus's Prometheus /metrics URL, for its peak RSS and CPU")
	keeperMetrics := fl.String("keeper-metrics", "", "Keeper's Prometheus /metrics URL, for its peak RSS and CPU")
	protocols := fl.String("protocols", "h2,h1", "comma-separated HTTP versions to call SPIKE and the floor over: h2 (what workloads' client speaks), h1")
	raw := fl.Bool("raw", true, "measure the raw pgx reference beside SPIKE (false: SPIKE only, for paired runs)")
	ops := fl.String("ops", "get,put", "comma-separated operations to measure: get, put")
	floor := fl.String("floor", "", "URL of the protocol floor (spike-nexus floor), measured beside SPIKE with the same client; empty: none")
	floorMetrics := fl.String("floor-metrics", "", "the floor's Prometheus /metrics URL, for its CPU")
	pgStats := fl.String("pg-stats-url", "", "superuser PostgreSQL URL to read pg_stat_statements and the WAL position through, for statements and WAL per request; empty: none")
	pgStatsDB := fl.String("pg-stats-db", "spike", "the database whose statements -pg-stats-url counts")
	profile := fl.String("profile", "", "write CPU profiles of each SPIKE cell (spike-bench's, and Nexus's through -nexus-metrics's listener) to this folder")
	scale := newScaleFlags(fl)
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), `usage: spike-bench [flags]

Measures SPIKE's secret get and put throughput and latency against a running
stack, next to raw pgx reads and writes on the same PostgreSQL; with -mode
scale, the cost of get, put and list as secrets and policies grow instead. The SVID comes
from SPIFFE_ENDPOINT_SOCKET, or SPIKE_SVID_CERT, SPIKE_SVID_KEY and
SPIKE_TRUST_BUNDLE; SPIKE_TRUST_DOMAIN and SPIKE_NEXUS_ID name the server.

`)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return config{}, err
	}
	if fl.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fl.Args())
	}

	or := func(v, env, def string) string {
		if v != "" {
			return v
		}
		if e := getenv(env); e != "" {
			return e
		}
		return def
	}
	cfg := config{
		NexusURL:      or(*nexusURL, "SPIKE_NEXUS_URL", defaultNexusURL),
		SVID:          svid.ConfigFromEnv(getenv),
		TokenFile:     or(*tokenFile, "SPIKE_TOKEN_FILE", ""),
		DatabaseURL:   or(*dbURL, "SPIKE_DATABASE_URL", ""),
		Duration:      *dur,
		ValueSize:     *size,
		Paths:         *paths,
		Out:           *out,
		NexusMetrics:  *nexusMetrics,
		KeeperMetrics: *keeperMetrics,
		Profile:       *profile,
		FloorURL:      *floor,
		FloorMetrics:  *floorMetrics,
		PGStatsURL:    *pgStats,
		PGStatsDB:     *pgStatsDB,
		Raw:           *raw,
	}
	var errs []error
	td, err := identity.TrustDomain(getenv("SPIKE_TRUST_DOMAIN"))
	if err != nil {
		return config{}, fmt.Errorf("SPIKE_TRUST_DOMAIN: %w", err)
	}
	cfg.NexusID = identity.Nexus(td)
	if s := getenv("SPIKE_NEXUS_ID"); s != "" {
		if cfg.NexusID, err = spiffeid.FromString(s); err != nil {
			errs = append(errs, fmt.Errorf("SPIKE_NEXUS_ID: %w", err))
		}
	}
	if !strings.HasPrefix(cfg.NexusURL, "https://") {
		errs = append(errs, fmt.Errorf("-nexus: %q is not an https URL", cfg.NexusURL))
	}
	if cfg.Protocols, err = parseList(*protocols, protoH2, protoH1); err != nil {
		errs = append(errs, fmt.Errorf("-protocols: %w", err))
	}
	if cfg.Ops, err = parseList(*ops, "get", "put"); err != nil {
		errs = append(errs, fmt.Errorf("-ops: %w", err))
	}
	if cfg.FloorURL != "" && !strings.HasPrefix(cfg.FloorURL, "https://") {
		errs = append(errs, fmt.Errorf("-floor: %q is not an https URL", cfg.FloorURL))
	}
	if cfg.DatabaseURL == "" {
		errs = append(errs, errors.New("-database-url: required (or SPIKE_DATABASE_URL) for the raw reference"))
	}
	if cfg.Concurrency, err = parseConcurrency(*conc); err != nil {
		errs = append(errs, fmt.Errorf("-concurrency: %w", err))
	}
	if cfg.Duration <= 0 {
		errs = append(errs, errors.New("-duration: must be positive"))
	}
	if cfg.ValueSize < 1 || cfg.ValueSize > maxValueSize {
		errs = append(errs, fmt.Errorf("-value-size: must be 1 to %d bytes", maxValueSize))
	}
	if cfg.Paths < 1 || cfg.Paths > 1_000_000 {
		errs = append(errs, errors.New("-paths: must be 1 to 1000000"))
	}
	if err := scale.apply(&cfg); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

// parseList reads a comma-separated list of the words in allowed, each
// once, keeping its order.
func parseList(s string, allowed ...string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		switch {
		case !slices.Contains(allowed, p):
			return nil, fmt.Errorf("%q is not one of %s", p, strings.Join(allowed, ", "))
		case slices.Contains(out, p):
			return nil, fmt.Errorf("%s is given twice", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseConcurrency reads a comma-separated list of positive numbers, such
// as "1,16,64", keeping its order.
func parseConcurrency(s string) ([]int, error) {
	var list []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxConcurrency {
			return nil, fmt.Errorf("%q: want numbers from 1 to %d, e.g. 1,16,64", f, maxConcurrency)
		}
		list = append(list, n)
	}
	return list, nil
}
