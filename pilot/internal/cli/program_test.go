package cli

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// TestRun runs whole command lines against an in-process Nexus over plain
// HTTP: arguments, password input, rendering, error messages and exit codes.
func TestRun(t *testing.T) {
	t.Parallel()
	sealed := "SPIKE is sealed: unseal with: echo '<password>' | spike operator unseal"
	runCases(t, []cliCase{
		{
			name:         "put",
			args:         []string{"secret", "put", "apps/demo/db", "user=admin", "pass=s3=cr3t"},
			wantStdout:   "stored apps/demo/db version 1\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin", "pass": "s3=cr3t"}}},
		},
		{
			name:         "put json",
			args:         []string{"-o", "json", "secret", "put", "apps/demo/db", "user=admin"},
			wantStdout:   "{\n  \"path\": \"apps/demo/db\",\n  \"version\": 1,\n  \"created_at\": \"2025-03-04T05:06:07Z\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin"}}},
		},
		{
			name:       "put empty key",
			args:       []string{"secret", "put", "apps/demo/db", "=s3cr3t"},
			wantCode:   1,
			wantStderr: "spike: pair 1 has an empty key\nRun 'spike secret put --help' for usage.\n",
		},
		{
			name:       "put without pairs",
			args:       []string{"secret", "put", "apps/demo/db"},
			wantCode:   1,
			wantStderr: "spike: missing arguments: expected PATH and at least one KEY=VALUE (or PATH - for JSON on stdin)\nRun 'spike secret put --help' for usage.\n",
		},
		{
			name: "get",
			args: []string{"secret", "get", "apps/demo/db"},
			wantStdout: `apps/demo/db (version 1, created 2025-03-04T05:06:07Z by spiffe://spike.local/spike/pilot)

KEY   VALUE
dsn   postgres://db?sslmode=require
pass  s3cr3t
user  admin
`,
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name: "get version json",
			args: []string{"secret", "get", "apps/demo/db", "--version", "2", "--output=json"},
			wantStdout: `{
  "path": "apps/demo/db",
  "version": 2,
  "data": {
    "dsn": "postgres://db?sslmode=require",
    "pass": "s3cr3t",
    "user": "admin"
  },
  "created_at": "2025-03-04T05:06:07Z",
  "created_by": "spiffe://spike.local/spike/pilot"
}
`,
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db", Version: 2}},
		},
		{
			name:       "get negative version",
			args:       []string{"secret", "get", "apps/demo/db", "--version", "-1"},
			wantCode:   1,
			wantStderr: "spike: --version must be a version number (1 or more), or 0 for the latest; got -1\nRun 'spike secret get --help' for usage.\n",
		},
		{
			name:       "unknown output format",
			args:       []string{"secret", "get", "apps/demo/db", "-o", "xml"},
			wantCode:   1,
			wantStderr: "spike: unknown output format \"xml\": use table, json, yaml or env\nRun 'spike secret get --help' for usage.\n",
		},
		{
			name:         "list",
			args:         []string{"secret", "list", "apps/"},
			wantStdout:   "demo/\nreadme\nweb/\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/", PageSize: 1000}},
		},
		{
			name:         "list json",
			args:         []string{"secret", "list", "-o", "json"},
			wantStdout:   "{\n  \"paths\": [\n    \"apps/\",\n    \"top\"\n  ]\n}\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{PageSize: 1000}},
		},
		{
			name:         "delete latest",
			args:         []string{"secret", "delete", "apps/demo/db"},
			wantStdout:   "deleted apps/demo/db version 3\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "delete versions",
			args:         []string{"secret", "delete", "apps/demo/db", "--versions", "1,2"},
			wantStdout:   "deleted apps/demo/db versions 1, 2\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretRequest{Path: "apps/demo/db", Versions: []int64{1, 2}}},
		},
		{
			name:         "seal",
			args:         []string{"operator", "seal"},
			wantStdout:   "SPIKE is sealed: every Keeper forgot the root key.\nKeeper 1:  https://k1:8443  sealed on purpose\n\nUnseal it with: echo '<password>' | spike operator unseal\n",
			wantRequests: []proto.Message{&nexusv1.SealRequest{}},
		},
		{
			name:         "status json",
			args:         []string{"operator", "status", "-o", "json"},
			wantStdout:   "{\n  \"initialized\": true,\n  \"sealed\": false,\n  \"schema_version\": 1,\n  \"keeper_reachable\": true,\n  \"keeper_error\": \"\",\n  \"keyring_id\": \"ab12\",\n  \"nexus_version\": \"dev\",\n  \"keepers\": []\n}\n",
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
		},
		{
			name:         "status yaml",
			args:         []string{"operator", "status", "-o", "yaml"},
			wantStdout:   "initialized: true\nsealed: false\nschema_version: 1\nkeeper_reachable: true\nkeeper_error: \"\"\nkeyring_id: ab12\nnexus_version: dev\nkeepers: []\n",
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
		},
		{
			name:         "init yaml",
			args:         []string{"operator", "init", "-o", "yaml"},
			stdin:        "correct horse battery staple\n",
			wantStdout:   "keyring_id: ab12\nexpires_at: \"2025-03-04T13:06:07Z\"\ntoken_file: $TOKEN_FILE\n",
			wantRequests: []proto.Message{&nexusv1.InitRequest{Password: []byte("correct horse battery staple")}},
			wantToken:    initToken + "\n",
		},
		{
			name:         "init from a pipe",
			args:         []string{"operator", "init", "-o", "json"},
			stdin:        "correct horse battery staple\r\n",
			wantStdout:   "{\n  \"keyring_id\": \"ab12\",\n  \"expires_at\": \"2025-03-04T13:06:07Z\",\n  \"token_file\": \"$TOKEN_FILE\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.InitRequest{Password: []byte("correct horse battery staple")}},
			wantToken:    initToken + "\n",
		},
		{
			name:         "unseal from a pipe",
			args:         []string{"operator", "unseal"},
			stdin:        "correct horse\n",
			wantStdout:   "SPIKE is unsealed. Keyring ID: ab12\n",
			wantRequests: []proto.Message{&nexusv1.UnsealRequest{Password: []byte("correct horse")}},
		},
		{
			name:       "init with a password of the old minimum",
			args:       []string{"operator", "init"},
			stdin:      "vq8#Lm2!\n",
			wantCode:   1,
			wantStderr: "spike: password must be 12 to 1024 bytes long\nRun 'spike operator init --help' for usage.\n",
		},
		{
			name:       "init with a weak password",
			args:       []string{"operator", "init"},
			stdin:      "passwordpassword\n",
			wantCode:   1,
			wantStderr: "spike: password is too easy to guess: estimated 7 guesses, want at least 1e+08; add more unrelated words\nRun 'spike operator init --help' for usage.\n",
		},
		{
			name:       "init with the trust domain",
			args:       []string{"operator", "init"},
			stdin:      "prod.acme.example\n",
			env:        map[string]string{"SPIKE_TRUST_DOMAIN": "prod.acme.example"},
			wantCode:   1,
			wantStderr: "spike: password is too easy to guess: estimated 8 guesses, want at least 1e+08; add more unrelated words\nRun 'spike operator init --help' for usage.\n",
		},
		{
			name:         "unseal with a password of the old minimum",
			args:         []string{"operator", "unseal"},
			stdin:        "vq8#Lm2!\n",
			wantStdout:   "SPIKE is unsealed. Keyring ID: ab12\n",
			wantRequests: []proto.Message{&nexusv1.UnsealRequest{Password: []byte("vq8#Lm2!")}},
		},
		{
			name:         "init with shares from a pipe",
			args:         []string{"operator", "init", "--shares", "2/3", "-o", "json"},
			stdin:        "correct horse battery staple\n",
			wantStdout:   "{\n  \"keyring_id\": \"ab12\",\n  \"expires_at\": \"2025-03-04T13:06:07Z\",\n  \"token_file\": \"$TOKEN_FILE\",\n  \"shares\": [\n    \"" + fakeShare(1, 3, 2) + "\",\n    \"" + fakeShare(2, 3, 2) + "\",\n    \"" + fakeShare(3, 3, 2) + "\"\n  ]\n}\n",
			wantRequests: []proto.Message{&nexusv1.InitRequest{Password: []byte("correct horse battery staple"), ShareThreshold: 2, ShareCount: 3}},
			wantToken:    initToken + "\n",
		},
		{
			name:         "init with shares and no password",
			args:         []string{"operator", "init", "--shares", "1/1", "--no-password"},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.InitRequest{ShareThreshold: 1, ShareCount: 1}},
			wantToken:    initToken + "\n",
		},
		{
			name:       "init without password or shares",
			args:       []string{"operator", "init", "--no-password"},
			wantCode:   1,
			wantStderr: "spike: --no-password needs --shares K/N: something must unseal SPIKE\nRun 'spike operator init --help' for usage.\n",
		},
		{
			name:         "init with a bad split",
			args:         []string{"operator", "init", "--shares", "3/2"},
			wantCode:     1,
			wantInStderr: []string{"invalid argument \"3/2\" for \"--shares\" flag: want K/N with 1 ≤ K ≤ N ≤ 16, e.g. 3/5"},
		},
		{
			name:         "unseal with shares from a pipe",
			args:         []string{"operator", "unseal", "--shares"},
			stdin:        fakeShare(3, 3, 2) + "\n\n  " + fakeShare(1, 3, 2) + "\r\n" + fakeShare(2, 3, 2) + "\n",
			wantStdout:   "SPIKE is unsealed. Keyring ID: ab12\n",
			wantRequests: []proto.Message{&nexusv1.UnsealRequest{Shares: [][]byte{[]byte(fakeShare(3, 3, 2)), []byte(fakeShare(1, 3, 2))}}},
		},
		{
			name:       "unseal without shares",
			args:       []string{"operator", "unseal", "--shares"},
			stdin:      "\n",
			wantCode:   1,
			wantStderr: "spike: no shares given: type them at the prompts, or pipe them in, one a line\nRun 'spike operator unseal --help' for usage.\n",
		},
		{
			name:         "login with shares",
			args:         []string{"login", "--shares"},
			stdin:        fakeShare(1, 1, 1) + "\n",
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.LoginRequest{Shares: [][]byte{[]byte(fakeShare(1, 1, 1))}}},
			wantToken:    loginToken + "\n",
		},
		{
			name:         "rekey from a pipe",
			args:         []string{"operator", "rekey"},
			stdin:        "correct horse battery staple\npurple elephant umbrella quarry\n",
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.RekeyRequest{Password: []byte("correct horse battery staple"), NewPassword: []byte("purple elephant umbrella quarry")}},
		},
		{
			name:         "rekey with shares to shares",
			args:         []string{"operator", "rekey", "--with-shares", "--shares", "2/3", "--no-password", "-o", "json"},
			stdin:        fakeShare(1, 2, 2) + "\n" + fakeShare(2, 2, 2) + "\n",
			wantStdout:   "{\n  \"keyring_id\": \"ab12\",\n  \"epoch\": 2,\n  \"shares\": [\n    \"" + fakeShare(1, 3, 2) + "\",\n    \"" + fakeShare(2, 3, 2) + "\",\n    \"" + fakeShare(3, 3, 2) + "\"\n  ]\n}\n",
			wantRequests: []proto.Message{&nexusv1.RekeyRequest{Shares: [][]byte{[]byte(fakeShare(1, 2, 2)), []byte(fakeShare(2, 2, 2))}, NewShareThreshold: 2, NewShareCount: 3}},
		},
		{
			name:         "rekey to a weak password",
			args:         []string{"operator", "rekey"},
			stdin:        "correct horse battery staple\npassword1234\n",
			wantCode:     1,
			wantInStderr: []string{"spike: password is too easy to guess"},
		},
		{
			name:       "init with empty password",
			args:       []string{"operator", "init"},
			stdin:      "\n",
			wantCode:   1,
			wantStderr: "spike: empty password: type it at the prompt, or pipe it in: echo '<password>' | spike operator init\nRun 'spike operator init --help' for usage.\n",
		},
		{
			name:         "sealed",
			args:         []string{"secret", "get", "apps/demo/db"},
			serverErr:    connect.NewError(connect.CodeFailedPrecondition, errors.New(sealed)),
			wantCode:     2,
			wantStderr:   "spike: " + sealed + "\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "sealed, -o json",
			args:         []string{"-o", "json", "secret", "get", "apps/demo/db"},
			serverErr:    connect.NewError(connect.CodeFailedPrecondition, errors.New(sealed)),
			wantCode:     2,
			wantStderr:   `{"code":"failed_precondition","message":"SPIKE is sealed: unseal with: echo '<password>' | spike operator unseal","exit":2}` + "\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:       "usage mistake, -o json",
			args:       []string{"-o", "json", "secret", "put", "apps/demo/db", "=s3cr3t"},
			wantCode:   1,
			wantStderr: `{"code":"usage","message":"pair 1 has an empty key\nRun 'spike secret put --help' for usage.","exit":1}` + "\n",
		},
		{
			name:         "wrong password",
			args:         []string{"operator", "unseal"},
			stdin:        "wrong horse\n",
			serverErr:    connect.NewError(connect.CodeInvalidArgument, errors.New("wrong password")),
			wantCode:     2,
			wantStderr:   "spike: wrong password\n",
			wantRequests: []proto.Message{&nexusv1.UnsealRequest{Password: []byte("wrong horse")}},
		},
		{
			name:         "unreachable",
			args:         []string{"operator", "status"},
			unreachable:  true,
			wantCode:     1,
			wantInStderr: []string{"spike: cannot reach Nexus at http://127.0.0.1:", "SPIKE_NEXUS_URL", ". ./.spike/env"},
		},
		{
			name:       "unknown command",
			args:       []string{"secret", "gte", "apps/demo/db"},
			wantCode:   1,
			wantStderr: "spike: unknown command \"gte\" for \"spike secret\"; did you mean get?\nRun 'spike secret --help' for usage.\n",
		},
		{
			name:       "unknown flag",
			args:       []string{"secret", "list", "--bogus"},
			wantCode:   1,
			wantStderr: "spike: unknown flag: --bogus\nRun 'spike secret list --help' for usage.\n",
		},
	})
}

// cliCase is one spike command line run against the fake Nexus, with what
// it must print, exit with and send. Each case has its own HOME, so the
// token file is $HOME/.spike/token unless env says otherwise; "$TOKEN_FILE"
// in wantStdout and wantStderr stands for its path, and "$HOME" in args,
// wantStdout and wantStderr for HOME.
type cliCase struct {
	name         string
	args         []string
	env          map[string]string // besides HOME; "$HOME" in a value is replaced
	stdin        string
	files        map[string]string // files to create in HOME, by name
	token        string            // content of the token file before the run; "" for none
	tokenMode    os.FileMode       // mode of that file; 0 means 0600
	serverErr    error
	pageSize     int                               // entries per ListSecrets page
	invalid      []string                          // invalid_policies of ListPolicies
	audit        []*nexusv1.AuditRecord            // the audit trail; nil: demoAuditRecords
	auditPage    int                               // most records per ListAuditRecords page; 0: no cap
	verify       *nexusv1.VerifyAuditTrailResponse // answer of VerifyAuditTrail; nil: all ok
	unreachable  bool
	wantCode     int
	wantStdout   string
	anyStdout    bool   // do not check stdout
	wantStderr   string // exact, unless wantInStderr is used
	wantInStderr []string
	wantRequests []proto.Message
	wantAuth     []string // Authorization header of each request; nil: not checked
	wantToken    string   // content of the token file after the run; "" : not checked
	wantNoToken  bool     // the token file must not exist after the run
}

// runCases runs each case in parallel against its own fake Nexus.
func runCases(t *testing.T, tests []cliCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeNexus{err: tt.serverErr, pageSize: tt.pageSize, invalid: tt.invalid, audit: tt.audit, auditPageSize: tt.auditPage, verify: tt.verify}
			url := fake.serve(t)
			if tt.unreachable {
				closed := httptest.NewServer(nil)
				closed.Close()
				url = closed.URL
			}
			home := t.TempDir()
			env := map[string]string{"HOME": home}
			for k, v := range tt.env {
				env[k] = strings.ReplaceAll(v, "$HOME", home)
			}
			tokenPath := tokenFile(envFunc(env))
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(home, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "$HOME", home)
			}
			if tt.token != "" {
				writeTestToken(t, tokenPath, tt.token, tt.tokenMode)
			}
			var stdout, stderr strings.Builder
			p := &Program{
				Version: "test",
				Getenv:  envFunc(env),
				Stdin:   strings.NewReader(tt.stdin),
				Stdout:  &stdout,
				Stderr:  &stderr,
				dial:    dialPlain(url),
				now:     func() time.Time { return testNow },
			}
			code := p.Run(t.Context(), args)
			gotStdout, gotStderr := stdout.String(), stderr.String()
			for _, r := range [][2]string{{tokenPath, "$TOKEN_FILE"}, {home, "$HOME"}} {
				if r[0] != "" {
					gotStdout = strings.ReplaceAll(gotStdout, r[0], r[1])
					gotStderr = strings.ReplaceAll(gotStderr, r[0], r[1])
				}
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, gotStderr)
			}
			if diff := cmp.Diff(tt.wantStdout, gotStdout); diff != "" && !tt.anyStdout {
				t.Errorf("stdout mismatch (-want +got):\n%s", diff)
			}
			if tt.wantInStderr != nil {
				for _, s := range tt.wantInStderr {
					if !strings.Contains(gotStderr, s) {
						t.Errorf("stderr %q does not contain %q", gotStderr, s)
					}
				}
			} else if diff := cmp.Diff(tt.wantStderr, gotStderr); diff != "" {
				t.Errorf("stderr mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(gotStderr, "s3cr3t") || strings.Contains(gotStderr, "horse") {
				t.Errorf("stderr %q reveals a secret", gotStderr)
			}
			for _, token := range []string{initToken, loginToken, tt.token} {
				if token != "" && (strings.Contains(gotStdout, token) || strings.Contains(gotStderr, token)) {
					t.Errorf("output reveals the admin token %q:\nstdout %q\nstderr %q", token, gotStdout, gotStderr)
				}
			}
			if diff := cmp.Diff(tt.wantRequests, fake.received(), protocmp.Transform()); diff != "" {
				t.Errorf("requests mismatch (-want +got):\n%s", diff)
			}
			if tt.wantAuth != nil {
				if diff := cmp.Diff(tt.wantAuth, fake.authorizations()); diff != "" {
					t.Errorf("Authorization headers mismatch (-want +got):\n%s", diff)
				}
			}
			wantMode := os.FileMode(0o600)
			if tt.wantToken == tt.token && tt.tokenMode != 0 {
				wantMode = tt.tokenMode // unchanged
			}
			checkTokenFile(t, tokenPath, tt.wantToken, wantMode, tt.wantNoToken)
		})
	}
}

// TestRunWithoutNexus checks that help and version need no SVID and no
// Nexus, and that a missing SVID is a local error.
func TestRunWithoutNexus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		args         []string
		env          map[string]string
		wantCode     int
		realDial     bool // load the SVID from env as spike does; else any dial fails the test
		wantStdout   []string
		wantInStderr string
	}{
		{
			name:       "version without an SVID",
			args:       []string{"version"},
			realDial:   true,
			wantStdout: []string{"pilot: v9.9.9\nnexus: unknown (load Pilot's SVID: no SVID configured"},
		},
		{
			name:       "version json without an SVID",
			args:       []string{"version", "-o", "json"},
			realDial:   true,
			wantStdout: []string{"{\n  \"pilot\": \"v9.9.9\",\n  \"nexus\": \"\",\n  \"nexus_error\": \"load Pilot's SVID: no SVID configured"},
		},
		{name: "version flag", args: []string{"--version"}, wantStdout: []string{"spike v9.9.9\n"}},
		{name: "completion bash", args: []string{"completion", "bash"}, wantStdout: []string{"# bash completion V2 for spike"}},
		{name: "completion zsh", args: []string{"completion", "zsh"}, wantStdout: []string{"#compdef spike"}},
		{name: "completion fish", args: []string{"completion", "fish"}, wantStdout: []string{"# fish completion for spike"}},
		{name: "completion is listed", args: []string{"--help"}, wantStdout: []string{"completion  "}},
		{name: "help command", args: []string{"help", "secret", "get"}, wantStdout: []string{"--field", "Examples:"}},
		{
			name: "root help lists the environment",
			args: []string{"--help"},
			wantStdout: []string{"SPIKE_NEXUS_URL", "SPIKE_NEXUS_ID", "SPIKE_TRUST_DOMAIN", "SPIFFE_ENDPOINT_SOCKET",
				"SPIKE_SVID_CERT", "SPIKE_SVID_KEY", "SPIKE_TRUST_BUNDLE", "SPIKE_TOKEN_FILE", ". ./.spike/env",
				"spike login", "spike logout", "spike audit verify"},
		},
		{name: "no arguments", args: nil, wantStdout: []string{"Usage:", "operator", "secret"}},
		{name: "login help", args: []string{"login", "--help"}, wantStdout: []string{"~/.spike/token", "0600", "--ttl", "Examples:"}},
		{name: "policy help", args: []string{"policy", "put", "--help"}, wantStdout: []string{"--spiffe-id", "--perm", "-f, --file", "spiffe_id_pattern", "Examples:"}},
		{name: "audit help", args: []string{"audit", "--help"}, wantStdout: []string{"list", "verify", "prune", "Examples:"}},
		{
			name:       "prune help explains archiving",
			args:       []string{"audit", "prune", "--help"},
			wantStdout: []string{"--before", "--yes", "spike audit list --until 2025-01-01T00:00:00Z --limit 0 -o json > archive.json", "Examples:"},
		},
		{name: "put help", args: []string{"secret", "put", "--help"}, wantStdout: []string{"Examples:", "spike secret put apps/demo/db user=admin"}},
		{name: "group without subcommand", args: []string{"secret"}, wantStdout: []string{"Available Commands:", "put"}},
		{
			name:         "missing SVID",
			args:         []string{"secret", "list"},
			wantCode:     1,
			wantInStderr: "spike: load Pilot's SVID: no SVID configured",
		},
		{
			name:         "bad Nexus URL",
			args:         []string{"operator", "status"},
			env:          map[string]string{"SPIKE_NEXUS_URL": "http://127.0.0.1:8553"},
			wantCode:     1,
			wantInStderr: "spike: SPIKE_NEXUS_URL: \"http://127.0.0.1:8553\" is not an https URL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			var dialed atomic.Bool
			p := &Program{
				Version: "v9.9.9",
				Getenv:  envFunc(tt.env),
				Stdin:   strings.NewReader(""),
				Stdout:  &stdout,
				Stderr:  &stderr,
			}
			if tt.wantCode == 0 && !tt.realDial {
				p.dial = func(context.Context, ...connect.ClientOption) (*nexus, error) {
					dialed.Store(true)
					return nil, errors.New("unexpected dial")
				}
			}
			if code := p.Run(t.Context(), tt.args); code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if dialed.Load() {
				t.Error("connected to Nexus")
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout %q does not contain %q", stdout.String(), s)
				}
			}
			if !strings.Contains(stderr.String(), tt.wantInStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantInStderr)
			}
		})
	}
}
