package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// received is one event as a watcher got it.
type received struct {
	path    string
	version int64
	kind    nexusv1.ChangeKind
	data    string
	at      time.Time
}

// e2eWatch is an open WatchSecrets stream.
type e2eWatch struct {
	cancel context.CancelFunc
	events chan received
	done   chan error
	mu     sync.Mutex
	cursor string
}

// watchAs opens a watch on replica i as id (the admin with its token).
func (s *stack) watchAs(t *testing.T, i int, id spiffeid.ID, m *nexusv1.WatchSecretsRequest) *e2eWatch {
	t.Helper()
	src, err := s.ca.Source(id)
	if err != nil {
		t.Fatal(err)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))))
	c := nexusv1connect.NewSecretServiceClient(httpClient, "https://"+s.nexusAddrs[i])
	ctx, cancel := context.WithCancel(t.Context())
	req := connect.NewRequest(m)
	if id == identity.Pilot(td) {
		req.Header().Set("Authorization", "Bearer "+s.adminToken)
	}
	st, err := c.WatchSecrets(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w := &e2eWatch{cancel: cancel, events: make(chan received, 10000), done: make(chan error, 1)}
	first := make(chan struct{})
	go func() {
		defer st.Close()
		opened := false
		for st.Receive() {
			now := time.Now()
			r := st.Msg()
			for _, e := range r.GetEvents() {
				w.events <- received{e.GetPath(), e.GetVersions()[0], e.GetKind(), e.GetData()["n"], now}
			}
			w.mu.Lock()
			w.cursor = r.GetCursor()
			w.mu.Unlock()
			if !opened {
				opened = true
				close(first)
			}
		}
		w.done <- st.Err()
	}()
	t.Cleanup(cancel)
	select {
	case <-first:
	case err := <-w.done:
		t.Fatalf("watch on replica %d ended before its first response: %v", i, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("watch on replica %d: no first response", i)
	}
	return w
}

func (w *e2eWatch) lastCursor() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor
}

// collect returns n events, failing after timeout.
func (w *e2eWatch) collect(t *testing.T, n int, timeout time.Duration) []received {
	t.Helper()
	var got []received
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case e := <-w.events:
			got = append(got, e)
		case err := <-w.done:
			t.Fatalf("watch ended after %d of %d events: %v", len(got), n, err)
		case <-deadline:
			t.Fatalf("after %v: %d of %d events", timeout, len(got), n)
		}
	}
	return got
}

// none fails if an event arrives within d.
func (w *e2eWatch) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-w.events:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(d):
	}
}

// WatchSecrets across replicas: puts through one Nexus reach a watcher on
// the other, every version once and in order; a reconnect (to the other
// replica) with the cursor resumes without gaps or repeats; a watcher that
// loses read permission gets nothing more; forged change rows make no
// event.
func TestWatchAcrossReplicas(t *testing.T) {
	st := startStack(t, 2)
	st.initialise(t)
	admin := identity.Pilot(td)
	w := st.watchAs(t, 0, admin, &nexusv1.WatchSecretsRequest{Prefix: "watch/", IncludeData: true})

	const writers, puts = 4, 50
	var (
		mu      sync.Mutex
		started = map[string]time.Time{}
	)
	put := func(c nexusv1connect.SecretServiceClient, path string, n int) {
		begin := time.Now()
		resp, err := c.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
			Path: path, Data: map[string]string{"n": fmt.Sprint(n)},
		}))
		if err != nil {
			t.Errorf("put %s: %v", path, err)
			return
		}
		mu.Lock()
		started[fmt.Sprintf("%s@%d", path, resp.Msg.GetVersion())] = begin
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range writers {
		c := st.secretsClient(t, 1)
		wg.Go(func() {
			for n := 1; n <= puts; n++ {
				put(c, fmt.Sprintf("watch/p%d", i), n)
			}
		})
	}
	wg.Wait()
	{ // DEBUG
		time.Sleep(3 * time.Second)
		conn, _ := pgx.Connect(t.Context(), st.dsn)
		rows, _ := conn.Query(t.Context(), `SELECT pid, datname, state, coalesce(backend_xid::text,''), coalesce(backend_xmin::text,''), left(query, 120), pg_snapshot_xmin(pg_current_snapshot())::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL`)
		for rows.Next() {
			var a, b, c, d, e, f, g string
			var pid int
			_ = rows.Scan(&pid, &b, &c, &d, &e, &f, &g)
			t.Logf("DEBUG %d %s %s xid=%s xmin=%s %s snapxmin=%s %s", pid, b, c, d, e, f, g, a)
		}
		rows.Close()
		var n int
		_ = conn.QueryRow(t.Context(), `SELECT count(*) FROM secret_changes`).Scan(&n)
		t.Logf("DEBUG rows %d", n)
		conn.Close(t.Context())
	}
	got := w.collect(t, writers*puts, 20*time.Second)
	w.none(t, time.Second)

	// Every version of every path once, in order, with its data.
	perPath := map[string][]int64{}
	var latencies []time.Duration
	for _, e := range got {
		if e.kind != nexusv1.ChangeKind_CHANGE_KIND_WRITTEN {
			t.Fatalf("event %+v: want only writes", e)
		}
		if e.data != fmt.Sprint(e.version) {
			t.Fatalf("event %s@%d carries data %q, want %d", e.path, e.version, e.data, e.version)
		}
		perPath[e.path] = append(perPath[e.path], e.version)
		latencies = append(latencies, e.at.Sub(started[fmt.Sprintf("%s@%d", e.path, e.version)]))
	}
	for i := range writers {
		path := fmt.Sprintf("watch/p%d", i)
		if d := cmp.Diff(span(1, puts), perPath[path]); d != "" {
			t.Fatalf("versions of %s (-want +got):\n%s", path, d)
		}
	}
	slices.Sort(latencies)
	t.Logf("delivery latency from put start (put on replica 1, watch on replica 0, %d events): p50 %v, p99 %v, max %v",
		len(latencies), latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1])

	// Disconnect, puts meanwhile, resume with the cursor on the other
	// replica.
	cursor := w.lastCursor()
	w.cancel()
	c1 := st.secretsClient(t, 1)
	for n := puts + 1; n <= puts+10; n++ {
		put(c1, "watch/p0", n)
	}
	resumed := st.watchAs(t, 1, admin, &nexusv1.WatchSecretsRequest{Prefix: "watch/", Cursor: cursor})
	var after []int64
	for _, e := range resumed.collect(t, 10, 30*time.Second) {
		after = append(after, e.version)
	}
	if d := cmp.Diff(span(puts+1, puts+10), after); d != "" {
		t.Fatalf("resumed on the other replica (-want +got):\n%s", d)
	}
	resumed.none(t, time.Second)

	// Forged change rows: no event; the next real change still comes.
	conn, err := pgx.Connect(t.Context(), st.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	for _, row := range []string{
		`(pg_current_xact_id(), 'watch/p1', 1, '{999}')`, // a version that does not exist
		`(pg_current_xact_id(), 'watch/p1', 1, '{3}')`,   // an old write replayed
		`(pg_current_xact_id(), 'watch/p1', 6, '{}')`,    // a removal that did not happen
		`(pg_current_xact_id(), 'watch/nope', 1, '{1}')`, // a secret that does not exist
	} {
		if _, err := conn.Exec(t.Context(), `INSERT INTO secret_changes (xid, path, kind, versions) VALUES `+row); err != nil {
			t.Fatal(err)
		}
	}
	put(c1, "watch/p1", puts+1)
	if e := resumed.collect(t, 1, 30*time.Second)[0]; e.path != "watch/p1" || e.version != puts+1 {
		t.Fatalf("after forged rows: %+v, want the real write of watch/p1@%d", e, puts+1)
	}
	resumed.none(t, time.Second)

	// A workload that loses read permission.
	web := spiffeid.RequireFromString("spiffe://spike.local/app/web")
	pc := nexusv1connect.NewPolicyServiceClient(st.adminHTTP(t), "https://"+st.nexusAddrs[1], bearer(st.adminToken))
	if _, err := pc.PutPolicy(t.Context(), connect.NewRequest(&nexusv1.PutPolicyRequest{Policy: &nexusv1.Policy{
		Name: "web-watch", SpiffeIdPattern: web.String(), PathPattern: "watch/**", Permissions: []string{"read"},
	}})); err != nil {
		t.Fatal(err)
	}
	webClient := nexusv1connect.NewSecretServiceClient(st.httpAs(t, web), "https://"+st.nexusAddrs[0])
	waitFor(t, "replica 0 lets web read watch/p2", func() bool {
		_, err := webClient.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "watch/p2"}))
		return err == nil
	})
	ww := st.watchAs(t, 0, web, &nexusv1.WatchSecretsRequest{Prefix: "watch/"})
	put(c1, "watch/p2", puts+1)
	if e := ww.collect(t, 1, 30*time.Second)[0]; e.path != "watch/p2" || e.version != puts+1 {
		t.Fatalf("workload got %+v, want watch/p2@%d", e, puts+1)
	}
	if _, err := pc.DeletePolicy(t.Context(), connect.NewRequest(&nexusv1.DeletePolicyRequest{Name: "web-watch"})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 0 refuses web reading watch/p2", func() bool {
		_, err := webClient.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: "watch/p2"}))
		return connect.CodeOf(err) == connect.CodePermissionDenied
	})
	for n := puts + 2; n <= puts+5; n++ {
		put(c1, "watch/p2", n)
	}
	ww.none(t, 2*time.Second)
	// The admin's stream on the same replica did get them.
	var p2 []int64
	for _, e := range resumed.collect(t, 5, 30*time.Second) {
		p2 = append(p2, e.version)
	}
	if d := cmp.Diff(span(puts+1, puts+5), p2); d != "" {
		t.Fatalf("admin watcher, watch/p2 (-want +got):\n%s", d)
	}
}

// adminHTTP is an HTTP client with the admin's SVID.
func (s *stack) adminHTTP(t *testing.T) *http.Client {
	t.Helper()
	return s.httpAs(t, identity.Pilot(td))
}

// httpAs is an HTTP client with an SVID for id.
func (s *stack) httpAs(t *testing.T, id spiffeid.ID) *http.Client {
	t.Helper()
	src, err := s.ca.Source(id)
	if err != nil {
		t.Fatal(err)
	}
	return rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))))
}
