package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Prometheus series spike-bench reads from Nexus and Keeper. All are
// unlabelled, so a line is "name value".
const (
	metricRSS          = "process_resident_memory_bytes"
	metricCPU          = "process_cpu_seconds_total"
	metricAuditBatches = "spike_nexus_audit_batch_size_count"
	metricAuditRecords = "spike_nexus_audit_batch_size_sum"
	metricAuditWaits   = "spike_nexus_audit_wait_seconds_count"
	metricAuditWaitSum = "spike_nexus_audit_wait_seconds_sum"
	metricAcquires     = "spike_nexus_db_pool_acquires_total"
	metricAcquireWait  = "spike_nexus_db_pool_empty_acquire_wait_seconds_total"
)

var wantedMetrics = []string{
	metricRSS, metricCPU, metricAuditBatches, metricAuditRecords,
	metricAuditWaits, metricAuditWaitSum, metricAcquires, metricAcquireWait,
}

// parseMetrics reads the Prometheus text format from r and returns the
// values of the unlabelled series named in names that it holds.
func parseMetrics(r io.Reader, names []string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	got := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", f[0], err)
		}
		got[f[0]] = v
	}
	return got, sc.Err()
}

// scraper reads metrics endpoints.
type scraper struct{ client *http.Client }

func newScraper() scraper { return scraper{client: &http.Client{Timeout: 2 * time.Second}} }

// scrape returns the wanted series from the endpoint at url.
func (s scraper) scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body, wantedMetrics)
}

// peak is the largest value of a series seen by watchPeak.
type peak struct {
	mu   sync.Mutex
	max  float64
	seen bool
	err  error
}

// watchPeak samples the series name at url every interval until ctx ends,
// keeping the largest value.
func watchPeak(ctx context.Context, s scraper, url, name string, interval time.Duration) *peak {
	p := &peak{}
	sample := func() {
		m, err := s.scrape(ctx, url)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				p.err = err
			}
			return
		}
		if v, ok := m[name]; ok && (!p.seen || v > p.max) {
			p.max, p.seen = v, true
		}
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// value returns the peak and whether any sample was taken; when none was,
// err says why.
func (p *peak) value() (float64, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max, p.seen, p.err
}
