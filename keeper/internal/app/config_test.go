package app_test

import (
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/keeper/internal/app"
	"github.com/spike-dev/spike/keeper/internal/keyring"
	"github.com/spike-dev/spike/shared/svid"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want app.Config
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: app.Config{
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				Listen:      &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443},
				OpsListen:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8444},
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
				KDF:         keyring.Params{Time: 3, MemoryKiB: 65536, Threads: 4},
				LogLevel:    slog.LevelInfo,
			},
		},
		{
			name: "everything set",
			env: map[string]string{
				"SPIKE_TRUST_DOMAIN":           "example.org",
				"SPIKE_KEEPER_LISTEN":          "0.0.0.0:9443",
				"SPIKE_KEEPER_OPS_LISTEN":      "0.0.0.0:9444",
				"SPIKE_KEEPER_KDF_TIME":        "1",
				"SPIKE_KEEPER_KDF_MEMORY_KIB":  "1024",
				"SPIKE_KEEPER_KDF_THREADS":     "2",
				"SPIKE_KEEPER_PEERS":           "https://k2:8443, https://k3:8443/",
				"SPIKE_KEEPER_RESEED_INTERVAL": "250ms",
				"SPIKE_LOG_LEVEL":              "debug",
				"SPIFFE_ENDPOINT_SOCKET":       "unix:///run/spire/agent.sock",
				"SPIKE_SVID_CERT":              "/svid.pem",
				"SPIKE_SVID_KEY":               "/key.pem",
				"SPIKE_TRUST_BUNDLE":           "/bundle.pem",
			},
			want: app.Config{
				TrustDomain:    spiffeid.RequireTrustDomainFromString("example.org"),
				Listen:         &net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 9443},
				OpsListen:      &net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 9444},
				NexusID:        spiffeid.RequireFromString("spiffe://example.org/spike/nexus"),
				Peers:          []*url.URL{{Scheme: "https", Host: "k2:8443"}, {Scheme: "https", Host: "k3:8443", Path: "/"}},
				ReseedInterval: 250 * time.Millisecond,
				KDF:            keyring.Params{Time: 1, MemoryKiB: 1024, Threads: 2},
				SVID: svid.Config{
					EndpointSocket: "unix:///run/spire/agent.sock",
					CertFile:       "/svid.pem",
					KeyFile:        "/key.pem",
					BundleFile:     "/bundle.pem",
				},
				LogLevel: slog.LevelDebug,
			},
		},
		{
			name: "explicit nexus id",
			env:  map[string]string{"SPIKE_KEEPER_NEXUS_ID": "spiffe://spike.local/custom/nexus"},
			want: app.Config{
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				Listen:      &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443},
				OpsListen:   &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8444},
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/custom/nexus"),
				KDF:         keyring.Params{Time: 3, MemoryKiB: 65536, Threads: 4},
				LogLevel:    slog.LevelInfo,
			},
		},
		{
			name: "ops listener off",
			env:  map[string]string{"SPIKE_KEEPER_OPS_LISTEN": "off"},
			want: app.Config{
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				Listen:      &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443},
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
				KDF:         keyring.Params{Time: 3, MemoryKiB: 65536, Threads: 4},
				LogLevel:    slog.LevelInfo,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := app.LoadConfig(env(tt.env))
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if tt.want.ReseedInterval == 0 {
				tt.want.ReseedInterval = time.Second // the default
			}
			opts := cmp.Options{
				cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b }),
				cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
				cmp.Comparer(func(a, b *net.TCPAddr) bool { return a.String() == b.String() }),
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"bad trust domain", map[string]string{"SPIKE_TRUST_DOMAIN": "Not A Domain"}, []string{"SPIKE_TRUST_DOMAIN"}},
		{"bad listen", map[string]string{"SPIKE_KEEPER_LISTEN": "nowhere"}, []string{"SPIKE_KEEPER_LISTEN"}},
		{"bad ops listen", map[string]string{"SPIKE_KEEPER_OPS_LISTEN": "nowhere"}, []string{"SPIKE_KEEPER_OPS_LISTEN"}},
		{"bad nexus id", map[string]string{"SPIKE_KEEPER_NEXUS_ID": "https://nexus"}, []string{"SPIKE_KEEPER_NEXUS_ID"}},
		{"kdf time not a number", map[string]string{"SPIKE_KEEPER_KDF_TIME": "three"}, []string{"SPIKE_KEEPER_KDF_TIME", `"three"`}},
		{"kdf time zero", map[string]string{"SPIKE_KEEPER_KDF_TIME": "0"}, []string{"SPIKE_KEEPER_KDF_*", "time 0"}},
		{"kdf memory too large", map[string]string{"SPIKE_KEEPER_KDF_MEMORY_KIB": "4194305"}, []string{"SPIKE_KEEPER_KDF_*", "memory"}},
		{"kdf memory negative", map[string]string{"SPIKE_KEEPER_KDF_MEMORY_KIB": "-1"}, []string{"SPIKE_KEEPER_KDF_MEMORY_KIB"}},
		{"kdf threads over 255", map[string]string{"SPIKE_KEEPER_KDF_THREADS": "256"}, []string{"SPIKE_KEEPER_KDF_THREADS", "0..255"}},
		{"kdf threads zero", map[string]string{"SPIKE_KEEPER_KDF_THREADS": "0"}, []string{"SPIKE_KEEPER_KDF_*", "threads"}},
		{"bad log level", map[string]string{"SPIKE_LOG_LEVEL": "loud"}, []string{"SPIKE_LOG_LEVEL"}},
		{"peer not https", map[string]string{"SPIKE_KEEPER_PEERS": "https://k2:1,http://k3:1"}, []string{"SPIKE_KEEPER_PEERS", `"http://k3:1"`}},
		{"peer with a path", map[string]string{"SPIKE_KEEPER_PEERS": "https://k2:1/x"}, []string{"SPIKE_KEEPER_PEERS"}},
		{"reseed interval too short", map[string]string{"SPIKE_KEEPER_RESEED_INTERVAL": "1ms"}, []string{"SPIKE_KEEPER_RESEED_INTERVAL"}},
		{
			"several at once",
			map[string]string{"SPIKE_KEEPER_LISTEN": "nowhere", "SPIKE_LOG_LEVEL": "loud"},
			[]string{"SPIKE_KEEPER_LISTEN", "SPIKE_LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := app.LoadConfig(env(tt.env))
			if err == nil {
				t.Fatal("LoadConfig succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
