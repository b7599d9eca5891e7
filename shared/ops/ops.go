// Package ops serves a program's operational endpoints over plain HTTP, on
// a listener of their own apart from the API: /healthz (the process is up),
// /readyz (it can serve requests) and /metrics (Prometheus). They carry no
// secrets and need no SVID, so that probes and scrapers can reach them; the
// listener is meant for loopback or a private network.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spike-dev/spike/shared/graceful"
)

// Off is the listen setting that turns the ops listener off.
const Off = "off"

// limits of the ops servers. Probes and scrapes are small GETs: anything
// slower is stuck.
var limits = graceful.Limits{Read: 10 * time.Second, Write: 30 * time.Second, MaxHeaderBytes: 16 << 10}

// readyTimeout bounds one readiness check, whatever it asks.
const readyTimeout = 5 * time.Second

// Config says what an ops server reports.
type Config struct {
	// Registry is served on /metrics; nil serves an empty one.
	Registry *prometheus.Registry
	// Ready returns nil when the program can serve requests, or an error
	// saying why not, shown in /readyz. Nil means always ready.
	Ready func(context.Context) error
	// Log receives the server's own errors; nil discards them.
	Log *slog.Logger
	// Pprof serves the Go profiler under /debug/pprof/ (for `make bench`
	// and for finding a hot spot in production). Profiles show code paths
	// and sizes, not memory contents.
	Pprof bool
}

// ListenAddress reads an ops listen setting: "" means def, Off means no
// listener (returned as ""), anything else must be a host:port.
func ListenAddress(v, def string) (string, error) {
	switch v {
	case "":
		v = def
	case Off:
		return "", nil
	}
	if _, err := net.ResolveTCPAddr("tcp", v); err != nil {
		return "", fmt.Errorf("want host:port or %q: %w", Off, err)
	}
	return v, nil
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors (memory, CPU, file descriptors), for a program to add its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler returns the mux serving /healthz, /readyz and /metrics.
func Handler(cfg Config) http.Handler {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"alive": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready == nil {
			writeJSON(w, http.StatusOK, readiness{Ready: true})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := cfg.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, readiness{Reason: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, readiness{Ready: true})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Registry: reg,
	}))
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readiness is the body of /readyz.
type readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NewServer returns a plain HTTP server for Handler(cfg), with timeouts
// and header limits set.
func NewServer(cfg Config) *http.Server {
	return graceful.NewServer(Handler(cfg), limits, cfg.Log)
}

// Serve serves plain HTTP on ln until ctx is done, then shuts down
// gracefully. It returns nil after a clean shutdown.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	return graceful.Serve(ctx, srv, func() error { return srv.Serve(ln) })
}

// ServeWith runs api, the program's API server, with the ops endpoints
// served on ln beside it (none when ln is nil). The ops server keeps
// answering while api drains, and stops when api returns; if it fails, api's
// context is cancelled, so that the program stops instead of running
// unobserved. It returns the errors of both.
func ServeWith(ctx context.Context, ln net.Listener, cfg Config, api func(context.Context) error) error {
	if ln == nil {
		return api(ctx)
	}
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	opsErr := make(chan error, 1)
	go func() {
		err := Serve(opsCtx, NewServer(cfg), ln)
		if err != nil {
			err = fmt.Errorf("ops server: %w", err)
			stopAPI()
		}
		opsErr <- err
	}()
	err := api(apiCtx)
	stopOps()
	return errors.Join(err, <-opsErr)
}
