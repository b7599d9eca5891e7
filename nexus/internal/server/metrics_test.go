package server_test

import (
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// metricValue returns the value of the series name{labels} in reg: a
// counter's or gauge's value, a histogram's sample count; 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	status := map[string]string{"rpc": nexusv1connect.OperatorServiceStatusProcedure, "code": "ok"}
	before := metricValue(t, s.metrics, "spike_nexus_requests_total", status)
	if _, err := s.operator(adminID).Status(t.Context(), connect.NewRequest(&nexusv1.StatusRequest{})); err != nil {
		t.Fatalf("status: %v", err)
	}
	if got := metricValue(t, s.metrics, "spike_nexus_requests_total", status); got != before+1 {
		t.Errorf("spike_nexus_requests_total%v = %v after one Status, want %v", status, got, before+1)
	}
	if got := metricValue(t, s.metrics, "spike_nexus_request_duration_seconds", status); got != before+1 {
		t.Errorf("spike_nexus_request_duration_seconds%v has %v samples, want %v", status, got, before+1)
	}

	// A refused request is counted under its code.
	workload := spiffeid.RequireFromPath(td, "/app/metrics")
	_, err := s.secrets(workload).GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "a/b"}))
	wantCode(t, err, connect.CodePermissionDenied, "no policy grants")
	denied := map[string]string{"rpc": nexusv1connect.SecretServiceGetSecretProcedure, "code": "permission_denied"}
	if got := metricValue(t, s.metrics, "spike_nexus_requests_total", denied); got != 1 {
		t.Errorf("spike_nexus_requests_total%v = %v, want 1", denied, got)
	}

	s.put("a/b", map[string]string{"k": "v"})
	if _, err := s.get("a/b", 0); err != nil {
		t.Fatalf("get: %v", err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"spike_nexus_dek_cache_total", map[string]string{"result": "hit"}},
		{"spike_nexus_keeper_call_duration_seconds", map[string]string{"call": "Status", "code": "ok"}},
		{"spike_nexus_keeper_call_duration_seconds", map[string]string{"call": "GenerateDataKey", "code": "ok"}},
		{"spike_nexus_audit_batch_size", nil},
		{"spike_nexus_audit_wait_seconds", nil},
		{"spike_nexus_db_pool_acquires_total", nil},
	} {
		if got := metricValue(t, s.metrics, c.name, c.labels); got < 1 {
			t.Errorf("%s%v = %v, want at least 1", c.name, c.labels, got)
		}
	}
	if got := metricValue(t, s.metrics, "spike_nexus_db_pool_max_connections", nil); got != 8 {
		t.Errorf("spike_nexus_db_pool_max_connections = %v, want 8 (the harness's pool)", got)
	}
}
