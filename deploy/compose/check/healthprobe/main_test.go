package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte(`{"alive":true}`))
		case "/readyz":
			http.Error(w, `{"ready":false,"reason":"sealed"}`, http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"healthy", []string{srv.URL + "/healthz"}, exitHealthy, ""},
		{"unready answer", []string{srv.URL + "/readyz"}, exitUnhealthy, "503 Service Unavailable"},
		{"reason echoed", []string{srv.URL + "/readyz"}, exitUnhealthy, "sealed"},
		{"nothing listening", []string{closed.URL + "/healthz"}, exitUnhealthy, "connection refused"},
		{"timeout flag", []string{"-timeout", "1s", srv.URL + "/healthz"}, exitHealthy, ""},
		{"no url", nil, exitUnhealthy, "usage"},
		{"two urls", []string{srv.URL, srv.URL}, exitUnhealthy, "usage"},
		{"https refused", []string{"https://127.0.0.1:8444/healthz"}, exitUnhealthy, "want an http://"},
		{"zero timeout", []string{"-timeout", "0s", srv.URL + "/healthz"}, exitUnhealthy, "-timeout must be positive"},
		{"bad flag", []string{"-nope", srv.URL}, exitUnhealthy, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantStderr == "" && stderr.Len() > 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
