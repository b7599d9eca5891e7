package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/devca"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("spike.local")
	web = spiffeid.RequireFromPath(td, "/app/web")
)

// result is what one run printed and returned.
type result struct {
	Code   int
	Stdout string
	Stderr string
}

func runWith(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func TestArgumentsAndConfig(t *testing.T) {
	t.Parallel()
	svidEnv := map[string]string{
		"SPIKE_SVID_CERT":    "/nonexistent/svid.pem",
		"SPIKE_SVID_KEY":     "/nonexistent/key.pem",
		"SPIKE_TRUST_BUNDLE": "/nonexistent/bundle.pem",
	}
	with := func(k, v string) map[string]string {
		env := map[string]string{k: v}
		for k, v := range svidEnv {
			env[k] = v
		}
		return env
	}
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string // a substring of stderr
	}{
		{"help", nil, []string{"--help"}, exitOK, usage + "\n", ""},
		{"no arguments", svidEnv, nil, exitLocal, "", usage},
		{"too many arguments", svidEnv, []string{"apps/web/db", "pass", "user"}, exitLocal, "", usage},
		{"empty path", svidEnv, []string{""}, exitLocal, "", usage},
		{"no SVID configured", nil, []string{"apps/web/db"}, exitLocal, "", "no SVID configured: set SPIFFE_ENDPOINT_SOCKET"},
		{"SVID files missing", svidEnv, []string{"apps/web/db"}, exitLocal, "", "load the workload's SVID: load SVID from /nonexistent/svid.pem"},
		{"bad trust domain", with("SPIKE_TRUST_DOMAIN", "Not A Domain"), []string{"apps/web/db"}, exitLocal, "", "SPIKE_TRUST_DOMAIN:"},
		{"bad Nexus ID", with("SPIKE_NEXUS_ID", "nexus"), []string{"apps/web/db"}, exitLocal, "", "SPIKE_NEXUS_ID:"},
		{"plain HTTP Nexus", with("SPIKE_NEXUS_URL", "http://127.0.0.1:8553"), []string{"apps/web/db"}, exitLocal, "", "is not an https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := runWith(t, tt.env, tt.args...)
			if got.Code != tt.wantCode || got.Stdout != tt.wantStdout || !strings.Contains(got.Stderr, tt.wantStderr) {
				t.Errorf("run(%q) = %+v\nwant code %d, stdout %q, stderr containing %q",
					tt.args, got, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	const path = "apps/web/db"
	const url = "https://127.0.0.1:8553"
	wire := func(code connect.Code) error {
		return &client.Error{Op: "get", Path: path, Code: code, Message: "the server's message", Remote: true}
	}
	local := func(code connect.Code, msg string) error {
		return &client.Error{Op: "get", Path: path, Code: code, Message: msg}
	}
	tests := []struct {
		name     string
		err      error
		wantCode int
		want     []string // substrings of the explanation
	}{
		{"permission denied", wire(connect.CodePermissionDenied), exitRefused, []string{
			"Nexus refused (permission_denied): the server's message",
			"No policy grants spiffe://spike.local/app/web read on apps/web/db",
			"spike policy check 'spiffe://spike.local/app/web' 'apps/web/db'",
			"spike policy put NAME --spiffe-id 'spiffe://spike.local/app/web' --path 'apps/web/db' --perm read",
		}},
		{"not found", wire(connect.CodeNotFound), exitRefused, []string{"(not_found)", "no secret at apps/web/db"}},
		{"sealed", wire(connect.CodeFailedPrecondition), exitRefused, []string{"(failed_precondition)", "sealed or not initialised", "spike operator unseal"}},
		{"unavailable", wire(connect.CodeUnavailable), exitRefused, []string{"(unavailable)", "database or Keeper", "after retries"}},
		{"unauthenticated", wire(connect.CodeUnauthenticated), exitRefused, []string{"(unauthenticated)", "own SVID", "admin token"}},
		{"data loss", wire(connect.CodeDataLoss), exitRefused, []string{"(data_loss)", "changed or corrupted", "tell an operator"}},
		{"invalid argument", wire(connect.CodeInvalidArgument), exitRefused, []string{"(invalid_argument)", "names the field"}},
		{"other refusal", wire(connect.CodeInternal), exitRefused, []string{"Nexus refused (internal): the server's message"}},
		{"unreachable", local(connect.CodeUnavailable, "dial tcp: connection refused"), exitLocal, []string{
			"cannot reach Nexus at https://127.0.0.1:8553", "connection refused", "SPIKE_NEXUS_URL",
		}},
		{"timeout", local(connect.CodeDeadlineExceeded, "context deadline exceeded"), exitLocal, []string{"no answer from Nexus", "within 30s"}},
		{"wrong server", local(connect.CodeUnauthenticated, "the client refused the server"), exitLocal, []string{"not the server this workload expects", "SPIKE_NEXUS_ID"}},
		{"not a Connect error", errors.New("boom"), exitLocal, []string{"boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := exitCode(tt.err); got != tt.wantCode {
				t.Errorf("exitCode = %d, want %d", got, tt.wantCode)
			}
			got := explain(tt.err, web, path, url)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("explanation does not contain %q:\n%s", w, got)
				}
			}
		})
	}
}

// fakeNexus answers GetSecret for the web workload: apps/web/db exists,
// every other path is denied.
type fakeNexus struct {
	nexusv1connect.UnimplementedSecretServiceHandler
}

func (fakeNexus) GetSecret(ctx context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	caller, _ := mtls.Caller(ctx)
	if caller != web || req.Msg.GetPath() != "apps/web/db" {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New(caller.String()+" may not read "+req.Msg.GetPath()))
	}
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: &nexusv1.Secret{
		Path:    "apps/web/db",
		Version: 3,
		Data:    map[string]string{"user": "web", "pass": "s3cr3t\n", "url": "a?b=1&c=<d>"},
	}}), nil
}

// startNexus serves fakeNexus over SPIFFE mTLS with Nexus's SVID and
// returns the environment a workload with web's SVID files needs.
func startNexus(t *testing.T) map[string]string {
	t.Helper()
	ca, err := devca.New(td)
	if err != nil {
		t.Fatal(err)
	}
	nexusSrc, err := ca.Source(identity.Nexus(td))
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteSVID(filepath.Join(t.TempDir(), "web"), web, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(nexusv1connect.NewSecretServiceHandler(fakeNexus{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mtls.NewServer(mux, mtls.ServerConfig(nexusSrc, tlsconfig.AuthorizeMemberOf(td)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mtls.Serve(ctx, srv, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return map[string]string{
		"SPIKE_NEXUS_URL":    "https://" + ln.Addr().String(),
		"SPIKE_SVID_CERT":    files.CertFile,
		"SPIKE_SVID_KEY":     files.KeyFile,
		"SPIKE_TRUST_BUNDLE": files.BundleFile,
	}
}

func TestReadsSecretOverMTLS(t *testing.T) {
	t.Parallel()
	env := startNexus(t)
	tests := []struct {
		name string
		args []string
		want result
	}{
		{"data as JSON", []string{"apps/web/db"}, result{exitOK, "{\n  \"pass\": \"s3cr3t\\n\",\n  \"url\": \"a?b=1&c=<d>\",\n  \"user\": \"web\"\n}\n", ""}},
		{"raw value of a key", []string{"apps/web/db", "pass"}, result{exitOK, "s3cr3t\n", ""}},
		{"missing key", []string{"apps/web/db", "token"}, result{exitLocal, "",
			"spike-example-workload: apps/web/db (version 3) has no key \"token\"\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, runWith(t, env, tt.args...)); diff != "" {
				t.Errorf("run(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestRefusalExplainedWithCallerID(t *testing.T) {
	t.Parallel()
	env := startNexus(t)
	got := runWith(t, env, "apps/other/db")
	if got.Code != exitRefused || got.Stdout != "" {
		t.Fatalf("run = %+v, want exit %d and no output", got, exitRefused)
	}
	for _, w := range []string{
		"Nexus refused (permission_denied): spiffe://spike.local/app/web may not read apps/other/db",
		"--spiffe-id 'spiffe://spike.local/app/web' --path 'apps/other/db' --perm read",
	} {
		if !strings.Contains(got.Stderr, w) {
			t.Errorf("stderr does not contain %q:\n%s", w, got.Stderr)
		}
	}
}
