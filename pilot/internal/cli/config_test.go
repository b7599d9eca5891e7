package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/svid"
)

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{
			name: "defaults",
			env:  nil,
			want: Config{
				NexusURL:    "https://127.0.0.1:8553",
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
			},
		},
		{
			name: "trust domain sets the default Nexus ID",
			env: map[string]string{
				"SPIKE_TRUST_DOMAIN": "example.org",
				"SPIKE_NEXUS_URL":    "https://nexus.example.org:8553/",
				"SPIKE_SVID_CERT":    "/s/svid.pem",
				"SPIKE_SVID_KEY":     "/s/key.pem",
				"SPIKE_TRUST_BUNDLE": "/s/bundle.pem",
			},
			want: Config{
				NexusURL:    "https://nexus.example.org:8553/",
				NexusID:     spiffeid.RequireFromString("spiffe://example.org/spike/nexus"),
				TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
				SVID:        svid.Config{CertFile: "/s/svid.pem", KeyFile: "/s/key.pem", BundleFile: "/s/bundle.pem"},
			},
		},
		{
			name: "explicit Nexus ID and workload API",
			env: map[string]string{
				"SPIKE_NEXUS_ID":         "spiffe://spike.local/nexus/eu-1",
				"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/agent.sock",
			},
			want: Config{
				NexusURL:    "https://127.0.0.1:8553",
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/nexus/eu-1"),
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				SVID:        svid.Config{EndpointSocket: "unix:///run/spire/agent.sock"},
			},
		},
		{
			name: "token file under HOME",
			env:  map[string]string{"HOME": "/home/ada"},
			want: Config{
				NexusURL:    "https://127.0.0.1:8553",
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				TokenFile:   "/home/ada/.spike/token",
			},
		},
		{
			name: "SPIKE_TOKEN_FILE wins over HOME",
			env:  map[string]string{"HOME": "/home/ada", "SPIKE_TOKEN_FILE": "/run/user/1000/spike-token"},
			want: Config{
				NexusURL:    "https://127.0.0.1:8553",
				NexusID:     spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
				TrustDomain: spiffeid.RequireTrustDomainFromString("spike.local"),
				TokenFile:   "/run/user/1000/spike-token",
			},
		},
		{name: "plain http", env: map[string]string{"SPIKE_NEXUS_URL": "http://127.0.0.1:8553"}, wantErr: `SPIKE_NEXUS_URL: "http://127.0.0.1:8553" is not an https URL`},
		{name: "no host", env: map[string]string{"SPIKE_NEXUS_URL": "https:///x"}, wantErr: `SPIKE_NEXUS_URL: "https:///x" has no host`},
		{name: "query", env: map[string]string{"SPIKE_NEXUS_URL": "https://n?x=1"}, wantErr: "SPIKE_NEXUS_URL: must not have a query or fragment"},
		{name: "bad Nexus ID", env: map[string]string{"SPIKE_NEXUS_ID": "nexus"}, wantErr: "SPIKE_NEXUS_ID: scheme is missing or invalid"},
		{name: "bad trust domain", env: map[string]string{"SPIKE_TRUST_DOMAIN": "Spike Local"}, wantErr: "SPIKE_TRUST_DOMAIN: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := LoadConfig(envFunc(tt.env))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("LoadConfig() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig(): %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
				cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b })); diff != "" {
				t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
