package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/svid"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := parseConfig(nil, env(map[string]string{
		"SPIKE_NEXUS_URL":    "https://127.0.0.1:8653",
		"SPIKE_TOKEN_FILE":   "/state/admin-token",
		"SPIKE_DATABASE_URL": "postgres://spike:pw@127.0.0.1:55532/spike",
		"SPIKE_SVID_CERT":    "c.pem",
		"SPIKE_SVID_KEY":     "k.pem",
		"SPIKE_TRUST_BUNDLE": "b.pem",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		NexusURL:    "https://127.0.0.1:8653",
		NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
		SVID:        svid.Config{CertFile: "c.pem", KeyFile: "k.pem", BundleFile: "b.pem"},
		TokenFile:   "/state/admin-token",
		DatabaseURL: "postgres://spike:pw@127.0.0.1:55532/spike",
		Concurrency: []int{1, 16, 64},
		Duration:    5 * time.Second,
		ValueSize:   256,
		Paths:       100,
		Out:         "docs/benchmarks.md",
		Protocols:   []string{"h2", "h1"},
		Ops:         []string{"get", "put"},
		Raw:         true,
		PGStatsDB:   "spike",
	}
	sameID := cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })
	if diff := cmp.Diff(want, got, sameID); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestParseConfigFlagsWin(t *testing.T) {
	t.Parallel()
	got, err := parseConfig([]string{
		"-nexus", "https://nexus:1", "-token-file", "tok", "-database-url", "postgres://x",
		"-concurrency", "2, 8", "-duration", "200ms", "-value-size", "1024", "-paths", "7", "-out", "",
		"-nexus-metrics", "http://n/metrics", "-keeper-metrics", "http://k/metrics", "-ops", "put", "-raw=false",
	}, env(map[string]string{"SPIKE_NEXUS_URL": "https://other", "SPIKE_DATABASE_URL": "postgres://other"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.NexusURL != "https://nexus:1" || got.TokenFile != "tok" || got.DatabaseURL != "postgres://x" ||
		!cmp.Equal(got.Concurrency, []int{2, 8}) || got.Duration != 200*time.Millisecond ||
		got.ValueSize != 1024 || got.Paths != 7 || got.Out != "" ||
		got.NexusMetrics != "http://n/metrics" || got.KeeperMetrics != "http://k/metrics" ||
		!cmp.Equal(got.Ops, []string{"put"}) || got.Raw {
		t.Errorf("config = %+v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-concurrency", "1,0"}, "-concurrency"},
		{[]string{"-concurrency", "a"}, "-concurrency"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-value-size", "0"}, "-value-size"},
		{[]string{"-value-size", "600000"}, "-value-size"},
		{[]string{"-paths", "0"}, "-paths"},
		{[]string{"-nexus", "http://plain"}, "not an https URL"},
		{[]string{"-floor", "http://plain"}, "-floor"},
		{[]string{"-protocols", "h3"}, "-protocols"},
		{[]string{"-protocols", "h2,h2"}, "twice"},
		{[]string{"-protocols", ""}, "-protocols"},
		{[]string{"-ops", "delete"}, "-ops"},
		{[]string{"-ops", "put,put"}, "twice"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseConfig(tc.args, env(map[string]string{"SPIKE_DATABASE_URL": "postgres://x"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%q) = %v, want an error about %s", tc.args, err, tc.want)
		}
	}
	if _, err := parseConfig(nil, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "-database-url") {
		t.Errorf("without a database URL: %v, want an error about -database-url", err)
	}
}

func TestReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want string
		wantErr          bool
	}{
		{"no path: a workload", "", "", false},
		{"missing file: a workload, as for Pilot", filepath.Join(dir, "none"), "", false},
		{"token with newline", write("ok", "spike_adm_abc\n"), "spike_adm_abc", false},
		{"empty file", write("empty", "\n"), "", true},
		{"two words", write("two", "a b\n"), "", true},
	} {
		got, err := readToken(tc.path)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: readToken = %q, %v; want %q, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}
