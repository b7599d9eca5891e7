package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// The scale mode's data: secret i lives at scalePath(i), in directories of
// scaleDirSize secrets; the first secret of each directory (1% of them)
// has scaleVersions versions, the others one.
const (
	scalePrefix   = pathPrefix + "scale/"
	scaleDirSize  = 100
	scaleVersions = 10
	// progressEvery is how often population progress goes to stderr.
	progressEvery = 10 * time.Second
	// policyWriters bounds the concurrent PutPolicy calls: each reloads
	// every policy, so more callers only queue.
	policyWriters = 8
	// callTimeout bounds each call of a cell, so that an operation whose
	// cost grows with the data fails its cell (the report shows why)
	// instead of holding the run up.
	callTimeout = 30 * time.Second
)

// The operations measured at each size.
const (
	opGet         = "get"
	opGetVersions = "get (10 versions)"
	opPut         = "put (new version)"
	opList        = "list (100 secrets)"
)

func scalePath(i int) string { return fmt.Sprintf("%sd%05d/s%07d", scalePrefix, i/scaleDirSize, i) }
func scaleDir(d int) string  { return fmt.Sprintf("%sd%05d", scalePrefix, d) }
func versioned(i int) bool   { return i%scaleDirSize == 0 }

// versionsOf is how many versions secret i gets.
func versionsOf(i int) int {
	if versioned(i) {
		return scaleVersions
	}
	return 1
}

// putsFor is the number of PutSecret calls that write secrets from to to.
func putsFor(from, to int) int {
	n := to - from
	if n <= 0 {
		return 0
	}
	// Versioned secrets are the multiples of scaleDirSize in [from, to).
	multiples := func(x int) int { return (x + scaleDirSize - 1) / scaleDirSize } // in [0, x)
	return n + (multiples(to)-multiples(from))*(scaleVersions-1)
}

// scalePolicy is policy number j of the ones the scale mode adds, for
// other workloads: most for one workload each, some for a group of
// workloads, and some for the bench workload itself on other paths. Each
// grants something the bench workload's own policy does not (meta or
// delete), so that every check of the workload has to match it.
func scalePolicy(td spiffeid.TrustDomain, self spiffeid.ID, j int) *nexusv1.Policy {
	p := &nexusv1.Policy{Name: fmt.Sprintf("scale-%06d", j)}
	switch j % 20 {
	case 0:
		p.SpiffeIdPattern = self.String()
		p.PathPattern = fmt.Sprintf("other/x%06d/**", j)
		p.Permissions = []string{"read", "meta"}
	case 1, 2, 3:
		p.SpiffeIdPattern = fmt.Sprintf("spiffe://%s/team/t%05d/*", td.Name(), j)
		p.PathPattern = fmt.Sprintf("teams/t%05d/*/config", j)
		p.Permissions = []string{"read", "list", "meta"}
	default:
		p.SpiffeIdPattern = fmt.Sprintf("spiffe://%s/app/w%06d", td.Name(), j)
		p.PathPattern = fmt.Sprintf("apps/w%06d/**", j)
		p.Permissions = []string{"read", "write", "list", "delete"}
	}
	return p
}

// scaleRun is one run of the scale mode.
type scaleRun struct {
	cfg      config
	secrets  nexusv1connect.SecretServiceClient
	policies nexusv1connect.PolicyServiceClient // nil without policies to write
	value    string
	self     spiffeid.ID
	db       *pgx.Conn
	sc       scraper
	pr       probe
	progress func(format string, a ...any)
}

// runScale writes secrets and policies through Nexus's API and measures
// at each size (see scale.go's scaleReport), printing the report to
// stdout and writing it to cfg.Out.
func runScale(ctx context.Context, cfg config, src *svid.Source, self spiffeid.ID, stdout io.Writer,
	progress func(string, ...any)) (err error) {
	sc := cfg.Scale
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(cfg.NexusID)), rpcclient.Options{})
	r := &scaleRun{
		cfg: cfg,
		secrets: nexusv1connect.NewSecretServiceClient(httpClient, cfg.NexusURL,
			connect.WithInterceptors(rpcclient.Interceptor())),
		value:    randomValue(cfg.ValueSize),
		self:     self,
		sc:       newScraper(),
		progress: progress,
	}
	r.pr = probe{scraper: r.sc, nexusURL: cfg.NexusMetrics, keeperURL: cfg.KeeperMetrics}
	if len(sc.Policies) > 0 {
		token, err := readToken(sc.AdminTokenFile)
		if err != nil {
			return err
		}
		if token == "" {
			return fmt.Errorf("-admin-token-file %s: no admin token", sc.AdminTokenFile)
		}
		adminSrc, err := svid.NewSource(ctx, sc.AdminSVID)
		if err != nil {
			return fmt.Errorf("load the admin's SVID: %w", err)
		}
		defer adminSrc.Close()
		adminHTTP := rpcclient.New(mtls.ClientConfig(adminSrc, tlsconfig.AuthorizeID(cfg.NexusID)), rpcclient.Options{})
		r.policies = nexusv1connect.NewPolicyServiceClient(adminHTTP, cfg.NexusURL,
			connect.WithInterceptors(rpcclient.Interceptor(), bearer(token)))
	}
	if r.db, err = pgx.Connect(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("connect to PostgreSQL for the database size: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = r.db.Close(cctx)
	}()

	rep := scaleReport{
		Date:        time.Now(),
		CPUs:        runtime.NumCPU(),
		CPUModel:    cpuModel(),
		GoVersion:   runtime.Version(),
		Postgres:    r.serverVersion(ctx),
		Caller:      caller(self.String(), false),
		ValueSize:   cfg.ValueSize,
		Duration:    cfg.Duration,
		Concurrency: cfg.Concurrency[0],
		Writers:     sc.Writers,
	}
	written := 0
	for _, size := range sc.Sizes {
		st, err := r.stage(ctx, size, 1, func(ctx context.Context) (population, error) {
			return r.populateSecrets(ctx, written, size)
		}, []string{opGet, opGetVersions, opPut, opList})
		rep.Stages = append(rep.Stages, st)
		if err != nil {
			return r.finish(stdout, rep, err)
		}
		written = size
	}
	policies := 1 // the workload's own
	for _, n := range sc.Policies {
		st, err := r.stage(ctx, written, n, func(ctx context.Context) (population, error) {
			return r.populatePolicies(ctx, policies, n)
		}, []string{opGet, opList})
		rep.Stages = append(rep.Stages, st)
		if err != nil {
			return r.finish(stdout, rep, err)
		}
		policies = n
	}
	return r.finish(stdout, rep, nil)
}

// finish prints and writes the report of what was measured, and returns
// err, or an error when requests failed.
func (r *scaleRun) finish(stdout io.Writer, rep scaleReport, err error) error {
	fmt.Fprint(stdout, rep.text())
	if r.cfg.Out != "" {
		if werr := writeFile(r.cfg.Out, rep.markdown()); werr != nil {
			return errors.Join(err, werr)
		}
		r.progress("wrote %s", r.cfg.Out)
	}
	if err != nil {
		return err
	}
	if n := rep.failedRequests(); n > 0 {
		return fmt.Errorf("%d requests failed; the report shows the first error of each cell", n)
	}
	return nil
}

// stage grows the data with populate, then measures ops on it with
// secrets secrets and policies policies stored.
func (r *scaleRun) stage(ctx context.Context, secrets, policies int, populate func(context.Context) (population, error),
	ops []string) (scaleStage, error) {
	st := scaleStage{Secrets: secrets, Policies: policies}
	sampling, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var nexusPeak *peak
	if r.cfg.NexusMetrics != "" {
		nexusPeak = watchPeak(sampling, r.sc, r.cfg.NexusMetrics, metricRSS, rssInterval)
	}
	before := r.pr.take(ctx)
	pop, err := populate(ctx)
	after := r.pr.take(ctx)
	pop.Use = usageBetween(before, after, runtime.NumCPU())
	st.Population = pop
	if err != nil {
		return st, err
	}
	for _, op := range ops {
		call, err := r.op(op, secrets)
		if err != nil {
			return st, err
		}
		fn := func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return call(ctx)
		}
		before := r.pr.take(ctx)
		s := runLoad(ctx, r.cfg.Concurrency[0], r.cfg.Duration, fn)
		after := r.pr.take(ctx)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		st.Rows = append(st.Rows, scaleRow{Op: op, Sum: s, Use: usageBetween(before, after, runtime.NumCPU())})
		if s.valid() {
			r.progress("%9d secrets %6d policies  %-18s %8.0f ops/s  p50 %s  p99 %s", secrets, policies, op,
				s.throughput(), ms(s.P50), ms(s.P99))
		} else {
			r.progress("%9d secrets %6d policies  %-18s %s (first: %s)", secrets, policies, op, s.refusal(), s.FirstError)
		}
	}
	stopSampling()
	st.NexusRSS = currentMemory(r.pr.take(ctx).nexus)
	st.NexusPeak = peakMemory(nexusPeak)
	st.DBSize = r.databaseSize(ctx)
	return st, nil
}

// op returns the call of operation name with size secrets stored. Puts
// and lists use whole directories only, and puts spare the secrets that
// have 10 versions.
func (r *scaleRun) op(name string, size int) (func(context.Context) error, error) {
	dirs := size / scaleDirSize
	switch name {
	case opGet:
		return func(ctx context.Context) error { return r.get(ctx, rand.IntN(size), 0) }, nil
	case opGetVersions:
		return func(ctx context.Context) error { return r.get(ctx, rand.IntN(dirs)*scaleDirSize, scaleVersions) }, nil
	case opPut:
		return func(ctx context.Context) error {
			return r.put(ctx, rand.IntN(dirs)*scaleDirSize+1+rand.IntN(scaleDirSize-1))
		}, nil
	case opList:
		return func(ctx context.Context) error { return r.list(ctx, rand.IntN(dirs)) }, nil
	}
	return nil, fmt.Errorf("no operation %q", name)
}

// get reads the latest version of secret i and checks its size and, when
// atLeast is set, that it has that many versions or more.
func (r *scaleRun) get(ctx context.Context, i int, atLeast int64) error {
	path := scalePath(i)
	resp, err := r.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if n := len(resp.Msg.GetSecret().GetData()[valueKey]); n != len(r.value) {
		return fmt.Errorf("get %s: value of %d bytes, want %d", path, n, len(r.value))
	}
	if v := resp.Msg.GetSecret().GetVersion(); v < atLeast {
		return fmt.Errorf("get %s: version %d, want %d or more", path, v, atLeast)
	}
	return nil
}

func (r *scaleRun) put(ctx context.Context, i int) error {
	path := scalePath(i)
	_, err := r.secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: path,
		Data: map[string]string{valueKey: r.value},
	}))
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return nil
}

// list lists directory d and checks that it shows its scaleDirSize secrets.
func (r *scaleRun) list(ctx context.Context, d int) error {
	dir := scaleDir(d)
	resp, err := r.secrets.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: dir, PageSize: 1000}))
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	if n := len(resp.Msg.GetPaths()); n != scaleDirSize {
		return fmt.Errorf("list %s: %d entries, want %d", dir, n, scaleDirSize)
	}
	return nil
}

// population is what growing the data to one stage took.
type population struct {
	// What is "secrets" or "policies"; Added of them were written with
	// Requests calls in Elapsed.
	What            string
	Added, Requests int
	Elapsed         time.Duration
	Use             usage
}

// populateSecrets writes secrets from to to (each with its versions)
// from cfg.Scale.Writers callers, reporting progress on stderr.
func (r *scaleRun) populateSecrets(ctx context.Context, from, to int) (population, error) {
	p := population{What: "secrets", Added: to - from, Requests: putsFor(from, to)}
	r.progress("writing secrets %d to %d (%d PutSecret calls) from %d callers", from, to, p.Requests, r.cfg.Scale.Writers)
	var next atomic.Int64
	next.Store(int64(from))
	elapsed, err := r.parallel(ctx, r.cfg.Scale.Writers, to-from, "secrets", func(ctx context.Context) (bool, error) {
		i := int(next.Add(1) - 1)
		if i >= to {
			return false, nil
		}
		for range versionsOf(i) {
			if err := r.put(ctx, i); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	p.Elapsed = elapsed
	return p, err
}

// populatePolicies adds policies as the admin until there are to (from
// are there: the workload's own and those added before).
func (r *scaleRun) populatePolicies(ctx context.Context, from, to int) (population, error) {
	p := population{What: "policies", Added: to - from, Requests: to - from}
	r.progress("writing policies %d to %d as the admin", from, to)
	td := r.cfg.NexusID.TrustDomain()
	var next atomic.Int64
	// Policy j of scalePolicy is the (j+2)th policy: the workload's own
	// is the first.
	next.Store(int64(from - 1))
	elapsed, err := r.parallel(ctx, min(policyWriters, r.cfg.Scale.Writers), to-from, "policies", func(ctx context.Context) (bool, error) {
		j := int(next.Add(1) - 1)
		if j >= to-1 {
			return false, nil
		}
		pol := scalePolicy(td, r.self, j)
		if _, err := r.policies.PutPolicy(ctx, connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: pol})); err != nil {
			return false, fmt.Errorf("put policy %s: %w", pol.GetName(), err)
		}
		return true, nil
	})
	p.Elapsed = elapsed
	return p, err
}

// parallel calls step from workers goroutines until each returns false
// or one fails, and logs progress towards total steps every
// progressEvery. It returns the time taken and the first error.
func (r *scaleRun) parallel(ctx context.Context, workers, total int, what string, step func(context.Context) (bool, error)) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	var once sync.Once
	var first error
	start := time.Now()
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	finished := make(chan struct{})
	go func() {
		for {
			select {
			case <-finished:
				return
			case <-ticker.C:
				n := done.Load()
				rate := float64(n) / time.Since(start).Seconds()
				eta := "–"
				if rate > 0 {
					eta = (time.Duration(float64(int64(total)-n)/rate) * time.Second).Round(time.Second).String()
				}
				r.progress("  %d of %d %s written (%.0f/s, %s left)", n, total, what, rate, eta)
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				more, err := step(ctx)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				if !more {
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(finished)
	elapsed := time.Since(start)
	if first == nil {
		first = ctx.Err()
	}
	if first == nil {
		r.progress("  %d %s written in %s (%.0f/s)", total, what, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
	}
	return elapsed, first
}

// databaseSize is pg_database_size of the stack's database, or -1.
func (r *scaleRun) databaseSize(ctx context.Context) int64 {
	var n int64
	if err := r.db.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func (r *scaleRun) serverVersion(ctx context.Context) string {
	var v string
	if err := r.db.QueryRow(ctx, `SHOW server_version`).Scan(&v); err != nil {
		return ""
	}
	return v
}

// currentMemory is the RSS in a scrape of Nexus's metrics.
func currentMemory(m map[string]float64) memory {
	if v, ok := m[metricRSS]; ok {
		return memory{Bytes: v, Measured: true}
	}
	return memory{Why: "no sample"}
}
