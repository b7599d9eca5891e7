package cli

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// TestRunSecret runs the secret commands against the fake Nexus: flags,
// input forms, output formats, pagination and exit codes.
func TestRunSecret(t *testing.T) {
	t.Parallel()
	casFailed := "check-and-set failed: apps/demo/db is at version 7, you expected 5"
	runCases(t, []cliCase{
		{
			name:         "put without --cas",
			args:         []string{"secret", "put", "apps/demo/db", "user=admin"},
			wantStdout:   "stored apps/demo/db version 1\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin"}}},
		},
		{
			name:         "put --cas 0",
			args:         []string{"secret", "put", "apps/demo/db", "--cas", "0", "user=admin"},
			wantStdout:   "stored apps/demo/db version 1\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin"}, Cas: proto.Int64(0)}},
		},
		{
			name:         "put --cas 5",
			args:         []string{"secret", "put", "apps/demo/db", "user=admin", "--cas=5"},
			wantStdout:   "stored apps/demo/db version 1\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin"}, Cas: proto.Int64(5)}},
		},
		{
			name:       "put --cas negative",
			args:       []string{"secret", "put", "apps/demo/db", "--cas", "-1", "user=admin"},
			wantCode:   1,
			wantStderr: "spike: --cas must be the version you expect to be current (0: none yet), got -1\nRun 'spike secret put --help' for usage.\n",
		},
		{
			name:       "put --cas not a number",
			args:       []string{"secret", "put", "apps/demo/db", "--cas", "x", "user=admin"},
			wantCode:   1,
			wantStderr: "spike: invalid argument \"x\" for \"--cas\" flag: strconv.ParseInt: parsing \"x\": invalid syntax\nRun 'spike secret put --help' for usage.\n",
		},
		{
			name:         "put check-and-set conflict",
			args:         []string{"secret", "put", "apps/demo/db", "--cas", "5", "user=admin"},
			serverErr:    connect.NewError(connect.CodeFailedPrecondition, errors.New(casFailed)),
			wantCode:     2,
			wantStderr:   "spike: " + casFailed + "\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin"}, Cas: proto.Int64(5)}},
		},
		{
			name:         "put JSON on stdin",
			args:         []string{"secret", "put", "apps/demo/db", "-"},
			stdin:        `{"user":"admin","pass":"s3cr3t"}`,
			wantStdout:   "stored apps/demo/db version 1\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin", "pass": "s3cr3t"}}},
		},
		{
			name:         "put k=- yaml",
			args:         []string{"secret", "put", "apps/demo/db", "user=admin", "pass=-", "-o", "yaml"},
			stdin:        "s3cr3t\n",
			wantStdout:   "path: apps/demo/db\nversion: 1\ncreated_at: \"2025-03-04T05:06:07Z\"\n",
			wantRequests: []proto.Message{&nexusv1.PutSecretRequest{Path: "apps/demo/db", Data: map[string]string{"user": "admin", "pass": "s3cr3t\n"}}},
		},
		{
			name:       "put non-string JSON value",
			args:       []string{"secret", "put", "apps/demo/db", "-"},
			stdin:      `{"user":"admin","port":5432}`,
			wantCode:   1,
			wantStderr: "spike: the value of key \"port\" in the JSON object on stdin is a number, not a string; put it in quotes\nRun 'spike secret put --help' for usage.\n",
		},
		{
			name:       "put missing file",
			args:       []string{"secret", "put", "apps/demo/db", "cert=@/nonexistent/cert.pem"},
			wantCode:   1,
			wantStderr: "spike: read the value of key \"cert\": open /nonexistent/cert.pem: no such file or directory\n",
		},
		{
			name:         "patch",
			args:         []string{"secret", "patch", "apps/demo/db", "pass=n3w", "--cas", "1"},
			wantStdout:   "patched apps/demo/db version 2\n",
			wantRequests: []proto.Message{&nexusv1.PatchSecretRequest{Path: "apps/demo/db", Data: map[string]string{"pass": "n3w"}, Cas: proto.Int64(1)}},
		},
		{
			name:         "patch json",
			args:         []string{"secret", "patch", "apps/demo/db", "pass=n3w", "-o", "json"},
			wantStdout:   "{\n  \"path\": \"apps/demo/db\",\n  \"version\": 2,\n  \"created_at\": \"2025-03-04T05:06:07Z\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.PatchSecretRequest{Path: "apps/demo/db", Data: map[string]string{"pass": "n3w"}}},
		},
		{
			name:       "patch duplicate key",
			args:       []string{"secret", "patch", "apps/demo/db", "pass=a", "pass=b"},
			wantCode:   1,
			wantStderr: "spike: key \"pass\" is given twice\nRun 'spike secret patch --help' for usage.\n",
		},
		{
			name:         "get --field",
			args:         []string{"secret", "get", "apps/demo/db", "--field", "dsn"},
			wantStdout:   "postgres://db?sslmode=require",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "get --field missing",
			args:         []string{"secret", "get", "apps/demo/db", "--version", "2", "--field", "password"},
			wantCode:     1,
			wantStderr:   "spike: version 2 of apps/demo/db has no key \"password\"; its keys are dsn, pass, user\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db", Version: 2}},
		},
		{
			name:       "get --field with -o",
			args:       []string{"secret", "get", "apps/demo/db", "--field", "dsn", "-o", "json"},
			wantCode:   1,
			wantStderr: `{"code":"usage","message":"--field prints one raw value, so it cannot be combined with -o\nRun 'spike secret get --help' for usage.","exit":1}` + "\n",
		},
		{
			name:       "get empty --field",
			args:       []string{"secret", "get", "apps/demo/db", "--field="},
			wantCode:   1,
			wantStderr: "spike: --field needs the name of a key\nRun 'spike secret get --help' for usage.\n",
		},
		{
			name:         "get env",
			args:         []string{"secret", "get", "apps/demo/db", "-o", "env"},
			wantStdout:   "dsn='postgres://db?sslmode=require'\npass='s3cr3t'\nuser='admin'\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name: "get yaml",
			args: []string{"secret", "get", "apps/demo/db", "-o", "yaml"},
			wantStdout: `path: apps/demo/db
version: 1
data:
  dsn: postgres://db?sslmode=require
  pass: s3cr3t
  user: admin
created_at: "2025-03-04T05:06:07Z"
created_by: spiffe://spike.local/spike/pilot
`,
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "secret not found",
			args:         []string{"secret", "get", "apps/x"},
			serverErr:    connect.NewError(connect.CodeNotFound, errors.New("secret apps/x not found")),
			wantCode:     2,
			wantStderr:   "spike: secret apps/x not found\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/x"}},
		},
		{
			name:         "destroyed version",
			args:         []string{"secret", "get", "apps/x", "--version", "3"},
			serverErr:    connect.NewError(connect.CodeNotFound, errors.New("version 3 of apps/x was destroyed")),
			wantCode:     2,
			wantStderr:   "spike: version 3 of apps/x was destroyed\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretRequest{Path: "apps/x", Version: 3}},
		},
		{
			name:       "-o env on another command",
			args:       []string{"secret", "list", "-o", "env"},
			wantCode:   1,
			wantStderr: "spike: -o env prints a secret's keys as shell variables; only 'spike secret get' supports it\nRun 'spike secret list --help' for usage.\n",
		},
		{
			name:         "list without trailing slash",
			args:         []string{"secret", "list", "apps"},
			wantStdout:   "demo/\nreadme\nweb/\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/", PageSize: 1000}},
		},
		{
			name:         "list subdirectory",
			args:         []string{"secret", "list", "apps/web/"},
			wantStdout:   "frontend/\ntoken\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/web/", PageSize: 1000}},
		},
		{
			name:         "list top",
			args:         []string{"secret", "list"},
			wantStdout:   "apps/\ntop\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{PageSize: 1000}},
		},
		{
			name:         "list directory json has full paths",
			args:         []string{"secret", "list", "apps/web", "-o", "json"},
			wantStdout:   "{\n  \"paths\": [\n    \"apps/web/frontend/\",\n    \"apps/web/token\"\n  ]\n}\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/web/", PageSize: 1000}},
		},
		{
			name:         "list recursive",
			args:         []string{"secret", "list", "-r", "apps/web"},
			wantStdout:   "apps/web/frontend/tls\napps/web/token\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/web", Recursive: true, PageSize: 1000}},
		},
		{
			name:         "list yaml",
			args:         []string{"secret", "list", "--recursive", "-o", "yaml", "apps/demo/"},
			wantStdout:   "paths:\n  - apps/demo/api\n  - apps/demo/db\n",
			wantRequests: []proto.Message{&nexusv1.ListSecretsRequest{Prefix: "apps/demo/", Recursive: true, PageSize: 1000}},
		},
		{
			name:       "list fetches every page",
			args:       []string{"secret", "list", "apps/"},
			pageSize:   2,
			wantStdout: "demo/\nreadme\nweb/\n",
			wantRequests: []proto.Message{
				&nexusv1.ListSecretsRequest{Prefix: "apps/", PageSize: 1000},
				&nexusv1.ListSecretsRequest{Prefix: "apps/", PageSize: 1000, PageToken: "2"},
			},
		},
		{
			name:       "list recursive, three pages",
			args:       []string{"secret", "list", "-r", "-o", "json"},
			pageSize:   2,
			wantStdout: "{\n  \"paths\": [\n    \"apps/demo/api\",\n    \"apps/demo/db\",\n    \"apps/readme\",\n    \"apps/web/frontend/tls\",\n    \"apps/web/token\",\n    \"top\"\n  ]\n}\n",
			wantRequests: []proto.Message{
				&nexusv1.ListSecretsRequest{Recursive: true, PageSize: 1000},
				&nexusv1.ListSecretsRequest{Recursive: true, PageSize: 1000, PageToken: "2"},
				&nexusv1.ListSecretsRequest{Recursive: true, PageSize: 1000, PageToken: "4"},
			},
		},
		{
			name:         "delete latest json",
			args:         []string{"secret", "delete", "apps/demo/db", "-o", "json"},
			wantStdout:   "{\n  \"path\": \"apps/demo/db\",\n  \"versions\": [\n    3\n  ]\n}\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "delete repeated --versions",
			args:         []string{"secret", "delete", "apps/demo/db", "--versions", "1,2", "--versions", "2,5"},
			wantStdout:   "deleted apps/demo/db versions 1, 2, 5\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretRequest{Path: "apps/demo/db", Versions: []int64{1, 2, 5}}},
		},
		{
			name:       "delete bad --versions",
			args:       []string{"secret", "delete", "apps/demo/db", "--versions", "1,x"},
			wantCode:   1,
			wantStderr: "spike: invalid argument \"1,x\" for \"--versions\" flag: \"x\" is not a version number\nRun 'spike secret delete --help' for usage.\n",
		},
		{
			name:       "destroy zero version",
			args:       []string{"secret", "destroy", "apps/demo/db", "--versions", "0"},
			wantCode:   1,
			wantStderr: "spike: invalid argument \"0\" for \"--versions\" flag: versions start at 1, got 0\nRun 'spike secret destroy --help' for usage.\n",
		},
		{
			name:         "undelete latest",
			args:         []string{"secret", "undelete", "apps/demo/db"},
			wantStdout:   "undeleted apps/demo/db version 3\n",
			wantRequests: []proto.Message{&nexusv1.UndeleteSecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "undelete versions",
			args:         []string{"secret", "undelete", "apps/demo/db", "--versions=1,2"},
			wantStdout:   "undeleted apps/demo/db versions 1, 2\n",
			wantRequests: []proto.Message{&nexusv1.UndeleteSecretRequest{Path: "apps/demo/db", Versions: []int64{1, 2}}},
		},
		{
			name:         "destroy versions yaml",
			args:         []string{"secret", "destroy", "apps/demo/db", "--versions", "1", "-o", "yaml"},
			wantStdout:   "path: apps/demo/db\nversions:\n  - 1\n",
			wantRequests: []proto.Message{&nexusv1.DestroySecretRequest{Path: "apps/demo/db", Versions: []int64{1}}},
		},
		{
			name:         "destroy latest",
			args:         []string{"secret", "destroy", "apps/demo/db"},
			wantStdout:   "destroyed apps/demo/db version 3\n",
			wantRequests: []proto.Message{&nexusv1.DestroySecretRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "rollback",
			args:         []string{"secret", "rollback", "apps/demo/db", "--version", "2"},
			wantStdout:   "rolled back apps/demo/db to version 2 as version 7\n",
			wantRequests: []proto.Message{&nexusv1.RollbackSecretRequest{Path: "apps/demo/db", Version: 2}},
		},
		{
			name:         "rollback json",
			args:         []string{"secret", "rollback", "apps/demo/db", "--version", "2", "-o", "json"},
			wantStdout:   "{\n  \"path\": \"apps/demo/db\",\n  \"version\": 7,\n  \"created_at\": \"2025-03-04T05:06:07Z\",\n  \"from_version\": 2\n}\n",
			wantRequests: []proto.Message{&nexusv1.RollbackSecretRequest{Path: "apps/demo/db", Version: 2}},
		},
		{
			name:         "rollback with cas",
			args:         []string{"secret", "rollback", "apps/demo/db", "--version", "2", "--cas", "6"},
			wantStdout:   "rolled back apps/demo/db to version 2 as version 7\n",
			wantRequests: []proto.Message{&nexusv1.RollbackSecretRequest{Path: "apps/demo/db", Version: 2, Cas: proto.Int64(6)}},
		},
		{
			name:       "rollback without --version",
			args:       []string{"secret", "rollback", "apps/demo/db"},
			wantCode:   1,
			wantStderr: "spike: rollback needs --version N: the version whose data becomes the new latest version\nRun 'spike secret rollback --help' for usage.\n",
		},
		{
			name:       "rollback --version 0",
			args:       []string{"secret", "rollback", "apps/demo/db", "--version", "0"},
			wantCode:   1,
			wantStderr: "spike: --version must be a version number (1 or more), got 0\nRun 'spike secret rollback --help' for usage.\n",
		},
		{
			name:         "version",
			args:         []string{"version"},
			wantStdout:   "pilot: test\nnexus: dev\n",
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
		},
		{
			name:         "version json",
			args:         []string{"version", "-o", "json"},
			wantStdout:   "{\n  \"pilot\": \"test\",\n  \"nexus\": \"dev\"\n}\n",
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
		},
		{
			name:         "version when Nexus refuses",
			args:         []string{"version"},
			serverErr:    connect.NewError(connect.CodePermissionDenied, errors.New("spiffe://spike.local/x is not an admin")),
			wantStdout:   "pilot: test\nnexus: unknown (spiffe://spike.local/x is not an admin)\n",
			wantRequests: []proto.Message{&nexusv1.StatusRequest{}},
		},
	})
}

// TestVersionNexusDown checks that `spike version` still prints the Pilot
// version, and succeeds, when Nexus cannot be reached.
func TestVersionNexusDown(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(nil)
	closed.Close()
	stdout, stderr, code := runSpike(t, closed.URL, "", "version")
	if code != 0 || stderr != "" {
		t.Errorf("exit code %d, stderr %q; want 0 and nothing", code, stderr)
	}
	want := "pilot: test\nnexus: unknown (cannot reach Nexus at " + closed.URL + ": unavailable: "
	if !strings.HasPrefix(stdout, want) || !strings.HasSuffix(stdout, ")\n") || strings.Count(stdout, "\n") != 2 {
		t.Errorf("stdout = %q, want two lines starting %q", stdout, want)
	}
}
