package cli

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// TestRunAuth runs login, logout and init against the fake Nexus, and
// checks which requests carry the saved admin token.
func TestRunAuth(t *testing.T) {
	t.Parallel()
	const (
		saved         = "spk_saved.c2F2ZWQ"
		tokenRequired = "admin token required: run `spike login`"
		tokenExpired  = "admin token expired at 2025-03-04T13:06:07Z: run `spike login`"
	)
	login := &nexusv1.LoginRequest{Password: []byte("correct horse")}
	runCases(t, []cliCase{
		{
			name:         "token sent when the file exists",
			args:         []string{"secret", "get", "apps/demo/db", "-o", "json"},
			token:        saved + "\n",
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
			wantAuth:     []string{"Bearer " + saved},
		},
		{
			name:         "no header without a token file",
			args:         []string{"secret", "get", "apps/demo/db", "-o", "json"},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
			wantAuth:     []string{""},
		},
		{
			name:         "no header without HOME or SPIKE_TOKEN_FILE",
			args:         []string{"operator", "status", "-o", "json"},
			env:          map[string]string{"HOME": ""},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
			wantAuth:     []string{""},
		},
		{
			name:         "SPIKE_TOKEN_FILE",
			args:         []string{"policy", "list", "-o", "json"},
			env:          map[string]string{"SPIKE_TOKEN_FILE": "$HOME/elsewhere/admin-token"},
			token:        saved,
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
			wantAuth:     []string{"Bearer " + saved},
		},
		{
			name:         "unseal sends the token",
			args:         []string{"operator", "unseal"},
			stdin:        "correct horse\n",
			token:        saved,
			wantStdout:   "SPIKE is unsealed. Keyring ID: ab12\n",
			wantRequests: []proto.Message{&nexusv1.UnsealRequest{Password: []byte("correct horse")}},
			wantAuth:     []string{"Bearer " + saved},
		},
		{
			name:       "token file readable by others",
			args:       []string{"secret", "get", "apps/demo/db"},
			token:      saved,
			tokenMode:  0o644,
			wantCode:   1,
			wantStderr: "spike: token file $TOKEN_FILE has mode 0644, so other users may read it; refusing to use it.\nMake it private with: chmod 600 $TOKEN_FILE (and consider 'spike logout' and 'spike login' for a fresh token)\n",
			wantToken:  saved,
		},
		{
			name:         "server wants a token",
			args:         []string{"secret", "get", "apps/demo/db"},
			serverErr:    connect.NewError(connect.CodeUnauthenticated, errors.New(tokenRequired)),
			wantCode:     2,
			wantStderr:   "spike: " + tokenRequired + "\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
			wantAuth:     []string{""},
		},
		{
			name:         "server says the token expired",
			args:         []string{"policy", "list"},
			token:        saved,
			serverErr:    connect.NewError(connect.CodeUnauthenticated, errors.New(tokenExpired)),
			wantCode:     2,
			wantStderr:   "spike: " + tokenExpired + "\n",
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
			wantAuth:     []string{"Bearer " + saved},
			wantToken:    saved,
		},

		{
			name:         "login",
			args:         []string{"login"},
			stdin:        "correct horse\n",
			wantStdout:   "logged in until 2025-03-04T13:06:07Z (token in $TOKEN_FILE)\n",
			wantRequests: []proto.Message{login},
			wantAuth:     []string{""},
			wantToken:    loginToken + "\n",
		},
		{
			name:         "login --ttl json",
			args:         []string{"login", "--ttl", "1h30m", "-o", "json"},
			stdin:        "correct horse\n",
			wantStdout:   "{\n  \"expires_at\": \"2025-03-04T06:36:07Z\",\n  \"token_file\": \"$TOKEN_FILE\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.LoginRequest{Password: []byte("correct horse"), TtlSeconds: 5400}},
			wantToken:    loginToken + "\n",
		},
		{
			name:         "login yaml",
			args:         []string{"login", "-o", "yaml"},
			stdin:        "correct horse\n",
			wantStdout:   "expires_at: \"2025-03-04T13:06:07Z\"\ntoken_file: $TOKEN_FILE\n",
			wantRequests: []proto.Message{login},
			wantToken:    loginToken + "\n",
		},
		{
			name:         "login replaces a stale token without sending it",
			args:         []string{"login"},
			stdin:        "correct horse\n",
			token:        saved,
			tokenMode:    0o644,
			wantStdout:   "logged in until 2025-03-04T13:06:07Z (token in $TOKEN_FILE)\n",
			wantRequests: []proto.Message{login},
			wantAuth:     []string{""},
			wantToken:    loginToken + "\n",
		},
		{
			name:         "login with the wrong password keeps the old token",
			args:         []string{"login"},
			stdin:        "correct horse\n",
			token:        saved,
			serverErr:    connect.NewError(connect.CodeUnauthenticated, errors.New("wrong password")),
			wantCode:     2,
			wantStderr:   "spike: wrong password\n",
			wantRequests: []proto.Message{login},
			wantToken:    saved,
		},
		{
			name:        "login --ttl too short",
			args:        []string{"login", "--ttl", "500ms"},
			stdin:       "correct horse\n",
			wantCode:    1,
			wantStderr:  "spike: --ttl must be at least 1s, got 500ms\nRun 'spike login --help' for usage.\n",
			wantNoToken: true,
		},
		{
			name:       "login with empty password",
			args:       []string{"login"},
			stdin:      "\n",
			wantCode:   1,
			wantStderr: "spike: empty password: type it at the prompt, or pipe it in: echo '<password>' | spike login\nRun 'spike login --help' for usage.\n",
		},
		{
			name:       "login without HOME",
			args:       []string{"login"},
			env:        map[string]string{"HOME": ""},
			stdin:      "correct horse\n",
			wantCode:   1,
			wantStderr: "spike: " + errNoTokenFile.Error() + "\n",
		},
		{
			name:       "login takes no arguments",
			args:       []string{"login", "admin"},
			wantCode:   1,
			wantStderr: "spike: spike login takes no arguments, got \"admin\"\nRun 'spike login --help' for usage.\n",
		},

		{
			name:         "logout",
			args:         []string{"logout"},
			token:        saved,
			wantStdout:   "logged out: the admin token is revoked and $TOKEN_FILE is removed\n",
			wantRequests: []proto.Message{&nexusv1.LogoutRequest{}},
			wantAuth:     []string{"Bearer " + saved},
			wantNoToken:  true,
		},
		{
			name:         "logout json",
			args:         []string{"logout", "-o", "json"},
			token:        saved,
			wantStdout:   "{\n  \"token_file\": \"$TOKEN_FILE\",\n  \"revoked\": true,\n  \"removed\": true\n}\n",
			wantRequests: []proto.Message{&nexusv1.LogoutRequest{}},
			wantNoToken:  true,
		},
		{
			name:       "logout without a token file",
			args:       []string{"logout"},
			wantStdout: "not logged in (no token in $TOKEN_FILE)\n",
		},
		{
			name:       "logout without a token file, yaml",
			args:       []string{"logout", "-o", "yaml"},
			wantStdout: "token_file: $TOKEN_FILE\nrevoked: false\nremoved: false\n",
		},
		{
			name:       "logout without HOME",
			args:       []string{"logout"},
			env:        map[string]string{"HOME": ""},
			wantStdout: "not logged in\n",
		},
		{
			name:         "logout of an expired token",
			args:         []string{"logout"},
			token:        saved,
			serverErr:    connect.NewError(connect.CodeUnauthenticated, errors.New(tokenExpired)),
			wantStdout:   "logged out: Nexus no longer accepted the admin token (" + tokenExpired + "); removed $TOKEN_FILE\n",
			wantRequests: []proto.Message{&nexusv1.LogoutRequest{}},
			wantAuth:     []string{"Bearer " + saved},
			wantNoToken:  true,
		},
		{
			name:         "logout of a revoked token, json",
			args:         []string{"logout", "-o", "json"},
			token:        saved,
			serverErr:    connect.NewError(connect.CodeUnauthenticated, errors.New("admin token revoked")),
			wantStdout:   "{\n  \"token_file\": \"$TOKEN_FILE\",\n  \"revoked\": false,\n  \"removed\": true,\n  \"note\": \"admin token revoked\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.LogoutRequest{}},
			wantNoToken:  true,
		},
		{
			name:         "logout refused keeps the token",
			args:         []string{"logout"},
			token:        saved,
			serverErr:    connect.NewError(connect.CodePermissionDenied, errors.New("spiffe://spike.local/app/web is not an admin")),
			wantCode:     2,
			wantStderr:   "spike: spiffe://spike.local/app/web is not an admin\n",
			wantRequests: []proto.Message{&nexusv1.LogoutRequest{}},
			wantToken:    saved,
		},
		{
			name:         "logout with Nexus down keeps the token",
			args:         []string{"logout"},
			token:        saved,
			unreachable:  true,
			wantCode:     1,
			wantInStderr: []string{"spike: cannot reach Nexus at "},
			wantToken:    saved,
		},
		{
			name:         "logout with a token file readable by others",
			args:         []string{"logout"},
			token:        saved,
			tokenMode:    0o604,
			wantCode:     1,
			wantInStderr: []string{"has mode 0604", "chmod 600 $TOKEN_FILE"},
			wantToken:    saved,
		},

		{
			name: "init logs in",
			args: []string{"operator", "init"},
			// A token file left from an earlier installation is replaced,
			// not sent.
			token:        saved,
			tokenMode:    0o644,
			stdin:        "correct horse battery staple\n",
			wantRequests: []proto.Message{&nexusv1.InitRequest{Password: []byte("correct horse battery staple")}},
			wantAuth:     []string{""},
			wantToken:    initToken + "\n",
			wantStdout: `SPIKE is initialised and unsealed. Keyring ID: ab12
You are logged in until 2025-03-04T13:06:07Z (token in $TOKEN_FILE).

Next steps:
  - Keep the admin password safe. Nobody can recover it, and after all
    Keepers restart SPIKE can only be unsealed with it:
      echo '<password>' | spike operator unseal
  - Log in again when the token expires: spike login
  - Check the state:  spike operator status
  - Store a secret:   spike secret put apps/demo/db user=admin pass=s3cr3t
  - Read it back:     spike secret get apps/demo/db
`,
		},
		{
			name:         "init cannot save the token",
			args:         []string{"operator", "init"},
			env:          map[string]string{"HOME": ""},
			stdin:        "correct horse battery staple\n",
			wantRequests: []proto.Message{&nexusv1.InitRequest{Password: []byte("correct horse battery staple")}},
			wantStderr:   "spike: warning: SPIKE is initialised, but you are not logged in: " + errNoTokenFile.Error() + "\nLog in with: spike login\n",
			wantStdout: `SPIKE is initialised and unsealed. Keyring ID: ab12

Next steps:
  - Keep the admin password safe. Nobody can recover it, and after all
    Keepers restart SPIKE can only be unsealed with it:
      echo '<password>' | spike operator unseal
  - Log in to manage secrets and policies: spike login
  - Check the state:  spike operator status
  - Store a secret:   spike secret put apps/demo/db user=admin pass=s3cr3t
  - Read it back:     spike secret get apps/demo/db
`,
		},
	})
}
