package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spike-dev/spike/shared/ops"
)

// start serves cfg on a loopback port until the test ends and returns its
// base URL.
func start(t *testing.T, cfg ops.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ops.Serve(ctx, ops.NewServer(cfg), ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	// Liveness does not depend on readiness.
	url := start(t, ops.Config{Ready: func(context.Context) error { return errors.New("sealed") }})
	code, body := get(t, url+"/healthz")
	if code != http.StatusOK || strings.TrimSpace(body) != `{"alive":true}` {
		t.Errorf("GET /healthz = %d %q, want 200 {\"alive\":true}", code, body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	type readiness struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	tests := []struct {
		name     string
		ready    func(context.Context) error
		wantCode int
		want     readiness
	}{
		{"no check", nil, http.StatusOK, readiness{Ready: true}},
		{"ready", func(context.Context) error { return nil }, http.StatusOK, readiness{Ready: true}},
		{"not ready", func(context.Context) error { return errors.New("database unreachable") },
			http.StatusServiceUnavailable, readiness{Reason: "database unreachable"}},
		{"check has a deadline", func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return nil
		}, http.StatusOK, readiness{Ready: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := start(t, ops.Config{Ready: tt.ready})
			code, body := get(t, url+"/readyz")
			var got readiness
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("GET /readyz body %q: %v", body, err)
			}
			if code != tt.wantCode {
				t.Errorf("GET /readyz = %d, want %d", code, tt.wantCode)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GET /readyz body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := ops.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "spike_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	url := start(t, ops.Config{Registry: reg})
	code, body := get(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{"spike_test_things_total 3", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics does not contain %q:\n%s", want, body)
		}
	}
}

func TestOnlyGet(t *testing.T) {
	t.Parallel()
	url := start(t, ops.Config{})
	resp, err := http.Post(url+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
	if code, _ := get(t, url+"/"); code != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", code)
	}
}

func TestPprof(t *testing.T) {
	t.Parallel()
	off := start(t, ops.Config{})
	if code, _ := get(t, off+"/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof off: GET /debug/pprof/cmdline = %d, want 404", code)
	}
	on := start(t, ops.Config{Pprof: true})
	code, body := get(t, on+"/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("pprof on: GET /debug/pprof/goroutine = %d %.80q, want 200 and a goroutine profile", code, body)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ops.Serve(ctx, ops.NewServer(ops.Config{}), ln) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestListenAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "", want: "127.0.0.1:8554"},
		{in: "off", want: ""},
		{in: "0.0.0.0:9100", want: "0.0.0.0:9100"},
		{in: "nowhere", wantErr: true},
		{in: "127.0.0.1:http-alt-nope", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ops.ListenAddress(tt.in, "127.0.0.1:8554")
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ListenAddress(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestServeWith(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	draining := make(chan struct{})
	drained := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ops.ServeWith(ctx, ln, ops.Config{}, func(ctx context.Context) error {
			<-ctx.Done()
			close(draining)
			<-drained
			return errors.New("api stopped")
		})
	}()
	if code, _ := get(t, url+"/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz = %d while serving", code)
	}
	cancel()
	<-draining
	// The API is draining: the ops endpoints still answer.
	if code, _ := get(t, url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d while the API drains, want 200", code)
	}
	close(drained)
	select {
	case err := <-done:
		if err == nil || err.Error() != "api stopped" {
			t.Errorf("ServeWith = %v, want the API's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeWith did not return")
	}
}

func TestServeWithStopsAPIWhenOpsFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once
	err = ops.ServeWith(t.Context(), ln, ops.Config{}, func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "ops server") {
		t.Errorf("ServeWith = %v, want the ops server's error", err)
	}
}
