// Package metrics defines Nexus's Prometheus metrics, all in one place:
// their names, labels and buckets. Label values come from fixed sets
// (procedures, Connect codes, Keeper calls), so the number of series stays
// bounded. A nil *Nexus records nothing, for tests that do not care.
package metrics

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
)

// Other is the label value for a procedure or call outside the known set.
const Other = "other"

// latencyBuckets (seconds) span a cached read (well under a millisecond)
// to the 30-second cap on a request.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Nexus holds the metrics that Nexus's components record as they work.
type Nexus struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	keeperCalls     *prometheus.HistogramVec
	auditBatch      prometheus.Histogram
	auditWait       prometheus.Histogram
}

// New returns Nexus's metrics, registered with reg.
func New(reg prometheus.Registerer) *Nexus {
	m := &Nexus{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spike_nexus_requests_total",
			Help: "Requests served, by procedure (rpc) and Connect code (\"ok\" for success).",
		}, []string{"rpc", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spike_nexus_request_duration_seconds",
			Help:    "Time to serve a request, audit record included, by procedure (rpc) and Connect code.",
			Buckets: latencyBuckets,
		}, []string{"rpc", "code"}),
		keeperCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spike_nexus_keeper_call_duration_seconds",
			Help:    "Time of calls from Nexus to Keeper, retries included, by call and Connect code.",
			Buckets: latencyBuckets,
		}, []string{"call", "code"}),
		auditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spike_nexus_audit_batch_size",
			Help:    "Audit records written per batch (group commit) by the audit trail's flushers.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 to 512, the largest batch
		}),
		auditWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spike_nexus_audit_wait_seconds",
			Help:    "Time from queueing a batched audit record to the end of its batch's write.",
			Buckets: latencyBuckets,
		}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.keeperCalls, m.auditBatch, m.auditWait)
	return m
}

// ObserveRequest records one served request. rpc must come from a fixed
// set (the procedures Nexus serves, or Other); code is "ok" or a Connect
// code.
func (m *Nexus) ObserveRequest(rpc, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(rpc, code).Inc()
	m.requestDuration.WithLabelValues(rpc, code).Observe(d.Seconds())
}

// ObserveAuditBatch records one batch write of the audit trail: its size,
// and for each record how long it waited from being queued until the
// write ended.
func (m *Nexus) ObserveAuditBatch(waits []time.Duration) {
	if m == nil {
		return
	}
	m.auditBatch.Observe(float64(len(waits)))
	for _, w := range waits {
		m.auditWait.Observe(w.Seconds())
	}
}

// KeeperCalls returns a client interceptor timing every call to Keeper.
func (m *Nexus) KeeperCalls() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if m == nil {
				return next(ctx, req)
			}
			start := time.Now()
			resp, err := next(ctx, req)
			m.keeperCalls.WithLabelValues(keeperCall(req.Spec().Procedure), Code(err)).Observe(time.Since(start).Seconds())
			return resp, err
		}
	}
}

// Code is the code label of a result: "ok" or the Connect code's name.
func Code(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// keeperCall names a Keeper procedure by its method, e.g. "Status".
func keeperCall(procedure string) string {
	method, ok := strings.CutPrefix(procedure, "/"+keeperv1connect.KeeperServiceName+"/")
	if !ok || method == "" || strings.Contains(method, "/") {
		return Other
	}
	return method
}

// PoolStater is the connection pool whose statistics are exported:
// postgres.Store.
type PoolStater interface {
	Stat() *pgxpool.Stat
}

// RegisterPool registers collectors reading pool's statistics at each
// scrape, as spike_nexus_db_pool_* metrics.
func RegisterPool(reg prometheus.Registerer, pool PoolStater) {
	reg.MustRegister(poolCollector{pool: pool})
}

// DEKCounter is the data key cache whose lookups are exported:
// envelope.Keys.
type DEKCounter interface {
	CacheStats() (hits, misses uint64)
}

// RegisterDEKCache registers spike_nexus_dek_cache_total{result="hit|miss"},
// read from keys at each scrape.
func RegisterDEKCache(reg prometheus.Registerer, keys DEKCounter) {
	reg.MustRegister(dekCollector{keys: keys})
}

var dekCacheDesc = prometheus.NewDesc("spike_nexus_dek_cache_total",
	"Data key lookups answered from Nexus's memory (hit) or through Keeper (miss).", []string{"result"}, nil)

type dekCollector struct{ keys DEKCounter }

func (c dekCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dekCacheDesc }

func (c dekCollector) Collect(ch chan<- prometheus.Metric) {
	hits, misses := c.keys.CacheStats()
	ch <- prometheus.MustNewConstMetric(dekCacheDesc, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(dekCacheDesc, prometheus.CounterValue, float64(misses), "miss")
}

// poolMetric is one pgxpool statistic.
type poolMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pgxpool.Stat) float64
}

func poolGauge(name, help string, v func(*pgxpool.Stat) float64) poolMetric {
	return poolMetric{prometheus.NewDesc("spike_nexus_db_pool_"+name, help, nil, nil), prometheus.GaugeValue, v}
}

func poolCounter(name, help string, v func(*pgxpool.Stat) float64) poolMetric {
	return poolMetric{prometheus.NewDesc("spike_nexus_db_pool_"+name, help, nil, nil), prometheus.CounterValue, v}
}

var poolMetrics = []poolMetric{
	poolGauge("acquired_connections", "Connections in use.",
		func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
	poolGauge("idle_connections", "Idle connections in the pool.",
		func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
	poolGauge("constructing_connections", "Connections being opened.",
		func(s *pgxpool.Stat) float64 { return float64(s.ConstructingConns()) }),
	poolGauge("total_connections", "Connections in the pool: acquired, idle and being opened.",
		func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }),
	poolGauge("max_connections", "The pool's size limit (SPIKE_DB_MAX_CONNS).",
		func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
	poolCounter("acquires_total", "Connections acquired from the pool.",
		func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
	poolCounter("acquire_duration_seconds_total", "Total time spent acquiring connections.",
		func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
	poolCounter("empty_acquires_total", "Acquires that had to wait for a connection: none was idle.",
		func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
	poolCounter("empty_acquire_wait_seconds_total", "Total time spent waiting when no connection was idle.",
		func(s *pgxpool.Stat) float64 { return s.EmptyAcquireWaitTime().Seconds() }),
	poolCounter("canceled_acquires_total", "Acquires given up because their context ended.",
		func(s *pgxpool.Stat) float64 { return float64(s.CanceledAcquireCount()) }),
	poolCounter("new_connections_total", "Connections opened.",
		func(s *pgxpool.Stat) float64 { return float64(s.NewConnsCount()) }),
}

type poolCollector struct{ pool PoolStater }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range poolMetrics {
		ch <- m.desc
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	for _, m := range poolMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(s))
	}
}
