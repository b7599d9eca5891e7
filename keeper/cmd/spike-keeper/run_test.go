package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/testkit/logtest"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// listenAddr waits for run's "keeper listening" log line and returns its
// API and ops addresses.
func listenAddr(t *testing.T, log *logtest.Buffer, done <-chan error) (addr, opsAddr string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(log.String()))
		for sc.Scan() {
			var line struct {
				Msg     string
				Addr    string
				OpsAddr string `json:"ops_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "keeper listening" {
				return line.Addr, line.OpsAddr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before listening: %v\nlog:\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("no \"keeper listening\" line; log:\n%s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
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

func TestRun(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)
	ca, err := devca.New(td)
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	keeperID := identity.Keeper(td, "1")
	svidConf, err := ca.WriteSVID(t.TempDir(), keeperID, time.Hour)
	if err != nil {
		t.Fatalf("WriteSVID: %v", err)
	}
	vars := map[string]string{
		"SPIKE_KEEPER_LISTEN":         "127.0.0.1:0",
		"SPIKE_KEEPER_OPS_LISTEN":     "127.0.0.1:0",
		"SPIKE_SVID_CERT":             svidConf.CertFile,
		"SPIKE_SVID_KEY":              svidConf.KeyFile,
		"SPIKE_TRUST_BUNDLE":          svidConf.BundleFile,
		"SPIKE_KEEPER_KDF_TIME":       "1",
		"SPIKE_KEEPER_KDF_MEMORY_KIB": "1024",
		"SPIKE_KEEPER_KDF_THREADS":    "1",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr logtest.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env(vars), &stdout, &stderr) }()
	addr, opsAddr := listenAddr(t, &stderr, done)
	opsURL := "http://" + opsAddr
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
		rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(keeperID))), "https://"+addr)
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
	for _, secret := range [][]byte{password, sealed.GetCiphertext()} {
		if bytes.Contains([]byte(metrics), secret) {
			t.Error("/metrics contains secret material")
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
	logs := stderr.String()
	for _, secret := range [][]byte{password, sealed.GetCiphertext()} {
		if bytes.Contains([]byte(logs), secret) {
			t.Error("log contains secret material")
		}
	}
	for _, want := range []string{`"msg":"request"`, `"procedure":"/spike.keeper.v1.KeeperService/Unseal"`, `"msg":"keeper unsealed"`, `"msg":"keeper stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not contain %s; log:\n%s", want, logs)
		}
	}
}

func TestRunRefusesBadSetup(t *testing.T) {
	t.Parallel()
	ca, err := devca.New(spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain))
	if err != nil {
		t.Fatalf("devca.New: %v", err)
	}
	svidConf, err := ca.WriteSVID(t.TempDir(), identity.Keeper(ca.TrustDomain(), "1"), time.Hour)
	if err != nil {
		t.Fatalf("WriteSVID: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"arguments", []string{"serve"}, nil, "takes no arguments"},
		{"bad config", nil, map[string]string{"SPIKE_LOG_LEVEL": "loud"}, "SPIKE_LOG_LEVEL"},
		{"no svid", nil, map[string]string{}, "no SVID configured"},
		{"svid from another trust domain", nil, map[string]string{
			"SPIKE_TRUST_DOMAIN": "example.org",
			"SPIKE_SVID_CERT":    svidConf.CertFile,
			"SPIKE_SVID_KEY":     svidConf.KeyFile,
			"SPIKE_TRUST_BUNDLE": svidConf.BundleFile,
		}, "not in trust domain example.org"},
		{"listen address in use", nil, map[string]string{
			"SPIKE_KEEPER_LISTEN": busy.Addr().String(),
			"SPIKE_SVID_CERT":     svidConf.CertFile,
			"SPIKE_SVID_KEY":      svidConf.KeyFile,
			"SPIKE_TRUST_BUNDLE":  svidConf.BundleFile,
		}, "listen:"},
		{"ops listen address in use", nil, map[string]string{
			"SPIKE_KEEPER_LISTEN":     "127.0.0.1:0",
			"SPIKE_KEEPER_OPS_LISTEN": busy.Addr().String(),
			"SPIKE_SVID_CERT":         svidConf.CertFile,
			"SPIKE_SVID_KEY":          svidConf.KeyFile,
			"SPIKE_TRUST_BUNDLE":      svidConf.BundleFile,
		}, "SPIKE_KEEPER_OPS_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut logtest.Buffer
			err := run(t.Context(), tt.args, env(tt.env), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
