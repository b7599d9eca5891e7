package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
)

// profiler records CPU profiles of the SPIKE cells: Nexus's, through its
// ops listener's /debug/pprof/profile (SPIKE_NEXUS_PPROF=true), and
// spike-bench's own, into dir as <who>-<cell>.pprof.
type profiler struct {
	dir string
	// nexusURL is Nexus's /debug/pprof/profile URL; "" profiles only
	// spike-bench.
	nexusURL string
	client   *http.Client
}

// newProfiler returns nil when dir is "": nothing is profiled.
func newProfiler(dir, nexusMetrics string) (*profiler, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-profile: %w", err)
	}
	p := &profiler{dir: dir, client: &http.Client{}}
	if nexusMetrics != "" {
		u, err := url.Parse(nexusMetrics)
		if err != nil {
			return nil, fmt.Errorf("-nexus-metrics: %w", err)
		}
		u.Path = strings.TrimSuffix(u.Path, "/metrics") + "/debug/pprof/profile"
		p.nexusURL = u.String()
	}
	return p, nil
}

// during profiles for d while a cell named name runs; the returned
// function waits for the profiles and reports where they went or what
// failed.
func (p *profiler) during(ctx context.Context, name string, d time.Duration) func() error {
	if p == nil {
		return func() error { return nil }
	}
	name = strings.ReplaceAll(name, " ", "-")
	own := filepath.Join(p.dir, "spike-bench-"+name+".pprof")
	f, err := os.Create(own)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	nexus := make(chan error, 1)
	if p.nexusURL != "" {
		secs := max(1, int(d.Round(time.Second)/time.Second))
		go func() { nexus <- p.fetch(ctx, fmt.Sprintf("%s?seconds=%d", p.nexusURL, secs), "nexus-"+name+".pprof") }()
	} else {
		nexus <- nil
	}
	return func() error {
		if err == nil {
			pprof.StopCPUProfile()
		}
		if f != nil {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("profile spike-bench: %w", err)
		}
		return <-nexus
	}
}

func (p *profiler) fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("profile Nexus: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile Nexus: %s from %s (is SPIKE_NEXUS_PPROF=true?)", resp.Status, url)
	}
	out, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return fmt.Errorf("profile Nexus: %w", err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("profile Nexus: %w", err)
	}
	return out.Close()
}
