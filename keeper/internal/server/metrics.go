package server

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
)

// latencyBuckets (seconds) span a data key unwrap (microseconds) to an
// Argon2id derivation under a queue of them (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// metrics are Keeper's request metrics. Their label values come from fixed
// sets: Keeper's procedures and the Connect codes.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics returns Keeper's metrics, registered with reg when it is not
// nil, with spike_keeper_unsealed reading unsealed at each scrape.
func newMetrics(reg prometheus.Registerer, unsealed func() bool) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spike_keeper_requests_total",
			Help: "Requests served, by procedure (rpc) and Connect code (\"ok\" for success).",
		}, []string{"rpc", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spike_keeper_request_duration_seconds",
			Help:    "Time to serve a request, by procedure (rpc) and Connect code.",
			Buckets: latencyBuckets,
		}, []string{"rpc", "code"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spike_keeper_unsealed",
			Help: "1 when Keeper holds a root keyring, 0 while it is sealed.",
		}, func() float64 {
			if unsealed() {
				return 1
			}
			return 0
		}))
	}
	return m
}

// observe records one served request.
func (m *metrics) observe(procedure, code string, d time.Duration) {
	rpc := procedure
	if !strings.HasPrefix(procedure, "/"+keeperv1connect.KeeperServiceName+"/") {
		rpc = "other"
	}
	m.requests.WithLabelValues(rpc, code).Inc()
	m.duration.WithLabelValues(rpc, code).Observe(d.Seconds())
}
