package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/spike-dev/spike/keeper/internal/app"
	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/testkit/logtest"
)

var td = spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)

// svidEnv returns the variables that load an SVID for id minted by ca.
func svidEnv(t *testing.T, ca *devca.CA, id spiffeid.ID) map[string]string {
	t.Helper()
	conf, err := ca.WriteSVID(t.TempDir(), id, time.Hour)
	if err != nil {
		t.Fatalf("WriteSVID: %v", err)
	}
	return map[string]string{
		"SPIKE_SVID_CERT":    conf.CertFile,
		"SPIKE_SVID_KEY":     conf.KeyFile,
		"SPIKE_TRUST_BUNDLE": conf.BundleFile,
	}
}

// with returns a copy of m with the entries of extra added.
func with(m, extra map[string]string) map[string]string {
	out := maps.Clone(m)
	maps.Copy(out, extra)
	return out
}

// httpGet returns the status and body of a plain GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestApp runs the assembled Keeper on free ports: the ops endpoints report
// it sealed, Nexus initialises and unseals it over mTLS, the ops endpoints
// then report it ready with its metrics, it stops when ctx is done, and no
// secret reaches the logs or metrics.
func TestApp(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	keeperID := identity.Keeper(td, "1")
	cfg, err := app.LoadConfig(env(with(svidEnv(t, ca, keeperID), map[string]string{
		"SPIKE_KEEPER_LISTEN":         "127.0.0.1:0",
		"SPIKE_KEEPER_OPS_LISTEN":     "127.0.0.1:0",
		"SPIKE_KEEPER_KDF_TIME":       "1",
		"SPIKE_KEEPER_KDF_MEMORY_KIB": "1024",
		"SPIKE_KEEPER_KDF_THREADS":    "1",
	})))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	var logs logtest.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	opsURL := "http://" + a.OpsAddr().String()
	if code, body := httpGet(t, opsURL+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d %s, want 200", code, body)
	}
	if code, body := httpGet(t, opsURL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "sealed") {
		t.Errorf("GET /readyz while sealed = %d %s, want 503 saying sealed", code, body)
	}

	src, err := ca.Source(identity.Nexus(td))
	if err != nil {
		t.Fatalf("nexus SVID: %v", err)
	}
	client := keeperv1connect.NewKeeperServiceClient(
		rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(keeperID))), "https://"+a.Addr().String())
	password := []byte("correct horse battery staple")
	initResp, err := client.Init(ctx, connect.NewRequest(&keeperv1.InitRequest{Password: password}))
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	sealed := initResp.Msg.GetKeyring()
	if _, err := client.Unseal(ctx, connect.NewRequest(&keeperv1.UnsealRequest{Password: password, Keyring: sealed})); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	status, err := client.Status(ctx, connect.NewRequest(&keeperv1.StatusRequest{}))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if diff := cmp.Diff(sealed.GetKeyringId(), status.Msg.GetKeyringId()); diff != "" {
		t.Errorf("Status keyring id (-want +got):\n%s", diff)
	}
	if code, body := httpGet(t, opsURL+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != `{"ready":true}` {
		t.Errorf("GET /readyz when unsealed = %d %s, want 200 {\"ready\":true}", code, body)
	}
	_, metrics := httpGet(t, opsURL+"/metrics")
	for _, want := range []string{
		`spike_keeper_requests_total{code="ok",rpc="/spike.keeper.v1.KeeperService/Unseal"} 1`,
		`spike_keeper_request_duration_seconds_count{code="ok",rpc="/spike.keeper.v1.KeeperService/Init"} 1`,
		"spike_keeper_unsealed 1",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics does not contain %s:\n%s", want, metrics)
		}
	}
	for _, secret := range [][]byte{password, sealed.GetSealed()} {
		if bytes.Contains([]byte(metrics), secret) {
			t.Error("/metrics contains secret material")
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	if _, err := net.Dial("tcp", a.Addr().String()); err == nil {
		t.Error("API address still accepts connections after Run returned")
	}
	log := logs.String()
	for _, secret := range [][]byte{password, sealed.GetSealed()} {
		if bytes.Contains([]byte(log), secret) {
			t.Error("log contains secret material")
		}
	}
	for _, want := range []string{
		`"msg":"keeper listening","addr":"` + a.Addr().String() + `","ops_addr":"` + a.OpsAddr().String() + `"`,
		`"id":"spiffe://spike.local/spike/keeper/1","nexus_id":"spiffe://spike.local/spike/nexus"`,
		`"msg":"request"`, `"procedure":"/spike.keeper.v1.KeeperService/Unseal"`,
		`"msg":"keeper unsealed"`, `"msg":"keeper stopped"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not contain %s; log:\n%s", want, log)
		}
	}
}

// TestOpsOff checks that with the ops listener off, Keeper serves its API
// only.
func TestOpsOff(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	cfg, err := app.LoadConfig(env(with(svidEnv(t, ca, identity.Keeper(td, "1")), map[string]string{
		"SPIKE_KEEPER_LISTEN":     "127.0.0.1:0",
		"SPIKE_KEEPER_OPS_LISTEN": "off",
	})))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	a, err := app.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if a.OpsAddr() != nil {
		t.Errorf("OpsAddr = %v, want nil", a.OpsAddr())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestNewRefusesBadSetup(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	svidVars := svidEnv(t, ca, identity.Keeper(td, "1"))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no svid", map[string]string{}, "no SVID configured"},
		{"svid from another trust domain", with(svidVars, map[string]string{
			"SPIKE_TRUST_DOMAIN": "example.org",
		}), "not in trust domain example.org"},
		{"listen address in use", with(svidVars, map[string]string{
			"SPIKE_KEEPER_LISTEN": busy.Addr().String(),
		}), "listen:"},
		{"ops listen address in use", with(svidVars, map[string]string{
			"SPIKE_KEEPER_LISTEN":     "127.0.0.1:0",
			"SPIKE_KEEPER_OPS_LISTEN": busy.Addr().String(),
		}), "SPIKE_KEEPER_OPS_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.LoadConfig(env(tt.env))
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			a, err := app.New(t.Context(), cfg, nil)
			if err == nil {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				_ = a.Run(ctx)
				t.Fatalf("New succeeded, want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
