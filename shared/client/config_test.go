package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/svid"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	files := map[string]string{"SPIKE_SVID_CERT": "/s/svid.pem", "SPIKE_SVID_KEY": "/s/key.pem", "SPIKE_TRUST_BUNDLE": "/s/bundle.pem"}
	fileSVID := svid.Config{CertFile: "/s/svid.pem", KeyFile: "/s/key.pem", BundleFile: "/s/bundle.pem"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range files {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tt := range []struct {
		name    string
		env     map[string]string
		want    client.Config
		wantErr []string // each in the error
	}{
		{"defaults", files, client.Config{
			NexusURL: "https://127.0.0.1:8553", NexusID: spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"), SVID: fileSVID,
		}, nil},
		{"workload API wins", map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix:///run/agent.sock", "SPIKE_SVID_CERT": "/x"}, client.Config{
			NexusURL: "https://127.0.0.1:8553", NexusID: spiffeid.RequireFromString("spiffe://spike.local/spike/nexus"),
			SVID: svid.Config{EndpointSocket: "unix:///run/agent.sock", CertFile: "/x"},
		}, nil},
		{"trust domain", with(map[string]string{"SPIKE_TRUST_DOMAIN": "example.org", "SPIKE_NEXUS_URL": "https://nexus:8553"}), client.Config{
			NexusURL: "https://nexus:8553", NexusID: spiffeid.RequireFromString("spiffe://example.org/spike/nexus"), SVID: fileSVID,
		}, nil},
		{"nexus ID", with(map[string]string{"SPIKE_NEXUS_ID": "spiffe://spike.local/other/nexus"}), client.Config{
			NexusURL: "https://127.0.0.1:8553", NexusID: spiffeid.RequireFromString("spiffe://spike.local/other/nexus"), SVID: fileSVID,
		}, nil},
		{"everything wrong", map[string]string{
			"SPIKE_NEXUS_URL": "http://nexus:8553", "SPIKE_TRUST_DOMAIN": "Not A Domain", "SPIKE_NEXUS_ID": "nexus", "SPIKE_SVID_CERT": "/x",
		}, client.Config{}, []string{"SPIKE_NEXUS_URL: \"http://nexus:8553\" is not an https URL", "SPIKE_TRUST_DOMAIN", "SPIKE_NEXUS_ID", "no SVID configured"}},
		{"query in URL", with(map[string]string{"SPIKE_NEXUS_URL": "https://nexus?x=1"}), client.Config{}, []string{"no user, query or fragment"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := client.ConfigFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want one saying %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// A client accepts only the Nexus ID it was given: another server is
// refused in the handshake, Unauthenticated and not retried into
// Unavailable.
func TestWrongServerRefused(t *testing.T) {
	t.Parallel()
	c := serveAs(t, failing{}, spiffeid.RequireFromString("spiffe://spike.local/someone/else"))
	_, err := c.Get(t.Context(), "a/b")
	var ce *client.Error
	if !errors.Is(err, client.ErrUnauthenticated) || !errors.As(err, &ce) || ce.Remote {
		t.Errorf("Get from the wrong server: %v, want a local ErrUnauthenticated", err)
	}
}
