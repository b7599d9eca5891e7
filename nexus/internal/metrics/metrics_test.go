package metrics

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
)

func TestKeeperCall(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		keeperv1connect.KeeperServiceStatusProcedure:         "Status",
		keeperv1connect.KeeperServiceDecryptDataKeyProcedure: "DecryptDataKey",
		"/spike.nexus.v1.SecretService/GetSecret":            Other,
		"/spike.keeper.v1.KeeperService/":                    Other,
		"":                                                   Other,
	} {
		if got := keeperCall(in); got != want {
			t.Errorf("keeperCall(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNilRecordsNothing(t *testing.T) {
	t.Parallel()
	var m *Nexus
	m.ObserveRequest("rpc", "ok", time.Second)
	m.ObserveAuditBatch([]time.Duration{time.Second})
	called := false
	next := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { called = true; return nil, nil }
	if _, err := m.KeeperCalls()(next)(t.Context(), connect.NewRequest(&struct{}{})); err != nil || !called {
		t.Errorf("nil KeeperCalls: called %v, error %v; want the call passed through", called, err)
	}
}

func TestObserve(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ObserveRequest("/x", "ok", time.Millisecond)
	m.ObserveRequest("/x", "ok", time.Millisecond)
	m.ObserveAuditBatch([]time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond})
	if got := testutil.ToFloat64(m.requests.WithLabelValues("/x", "ok")); got != 2 {
		t.Errorf("requests = %v, want 2", got)
	}
	if got := testutil.CollectAndCount(reg, "spike_nexus_audit_batch_size", "spike_nexus_audit_wait_seconds"); got != 2 {
		t.Errorf("audit series = %d, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("gather: %d series, %v", n, err)
	}
}
