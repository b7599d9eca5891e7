package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	keeperv1 "github.com/spike-dev/spike/proto/spike/keeper/v1"
	"github.com/spike-dev/spike/proto/spike/keeper/v1/keeperv1connect"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/testkit/logtest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// listenAddr waits for the "keeper listening" log line and returns its
// API address.
func listenAddr(t *testing.T, log *logtest.Buffer, done <-chan error) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(log.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "keeper listening" {
				return line.Addr
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

// TestRun runs Keeper configured through the environment, as main does,
// calls it over mTLS as Nexus and stops it. The app package tests the
// assembled Keeper in detail.
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
		"SPIKE_KEEPER_OPS_LISTEN":     "off",
		"SPIKE_SVID_CERT":             svidConf.CertFile,
		"SPIKE_SVID_KEY":              svidConf.KeyFile,
		"SPIKE_TRUST_BUNDLE":          svidConf.BundleFile,
		"SPIKE_KEEPER_KDF_TIME":       "1",
		"SPIKE_KEEPER_KDF_MEMORY_KIB": "1024",
		"SPIKE_KEEPER_KDF_THREADS":    "1",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr logtest.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env(vars), &stderr) }()
	addr := listenAddr(t, &stderr, done)

	src, err := ca.Source(identity.Nexus(td))
	if err != nil {
		t.Fatalf("nexus SVID: %v", err)
	}
	client := keeperv1connect.NewKeeperServiceClient(
		rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(keeperID))), "https://"+addr)
	if _, err := client.Status(ctx, connect.NewRequest(&keeperv1.StatusRequest{})); err != nil {
		t.Fatalf("Status: %v", err)
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
	for _, want := range []string{`"msg":"spike-keeper starting","version":"dev"`, `"msg":"keeper stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not contain %s; log:\n%s", want, logs)
		}
	}
}

// TestRunRefusesBadSetup checks the refusals of run itself; the app
// package tests those of the SVID and listeners.
func TestRunRefusesBadSetup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"arguments", []string{"serve"}, nil, "takes no arguments"},
		{"bad config", nil, map[string]string{"SPIKE_LOG_LEVEL": "loud"}, "SPIKE_LOG_LEVEL"},
		{"no svid", nil, map[string]string{}, "no SVID configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var errOut logtest.Buffer
			err := run(t.Context(), tt.args, env(tt.env), &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
