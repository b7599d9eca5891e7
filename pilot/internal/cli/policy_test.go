package cli

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// TestRunPolicy runs the policy commands against the fake Nexus: flags and
// policy files, output formats, the invalid policies warning and exit
// codes. Every request carries the saved admin token.
func TestRunPolicy(t *testing.T) {
	t.Parallel()
	const token = "spk_policy.dG9rZW4"
	bearer := []string{"Bearer " + token}
	webRead := &nexusv1.Policy{Name: "web-read", SpiffeIdPattern: webID, PathPattern: "apps/web/**", Permissions: []string{"read", "list"}}
	put := func(p *nexusv1.Policy) []proto.Message {
		return []proto.Message{&nexusv1.PutPolicyRequest{Policy: p}}
	}
	const policyYAML = `# the web frontend reads its secrets
name: web-read
spiffe_id: spiffe://spike.local/app/web
path: apps/web/**
permissions:
  - read
  - list
`
	const policyJSON = `{"name": "web-read", "spiffe_id_pattern": "spiffe://spike.local/app/web",
 "path_pattern": "apps/web/**", "permissions": ["read", "list"]}`
	const fileKeys = "a policy has name, spiffe_id_pattern (or spiffe_id), path_pattern (or path) and permissions"
	const putUsage = "\nRun 'spike policy put --help' for usage.\n"
	cases := []cliCase{
		{
			name:         "put with flags",
			args:         []string{"policy", "put", "web-read", "--spiffe-id", webID, "--path", "apps/web/**", "--perm", "read,list"},
			wantStdout:   "stored policy web-read\n",
			wantRequests: put(webRead),
			wantAuth:     bearer,
		},
		{
			name: "put with repeated --perm",
			args: []string{"policy", "put", "ci", "--spiffe-id", "spiffe://spike.local/ci/*", "--path", "apps/*/deploy",
				"--perm", "read", "--perm", "list, write"},
			wantStdout: "stored policy ci\n",
			wantRequests: put(&nexusv1.Policy{Name: "ci", SpiffeIdPattern: "spiffe://spike.local/ci/*", PathPattern: "apps/*/deploy",
				Permissions: []string{"read", "list", "write"}}),
		},
		{
			name: "put json",
			args: []string{"policy", "put", "web-read", "--spiffe-id", webID, "--path", "apps/web/**", "--perm", "read,list", "-o", "json"},
			wantStdout: `{
  "name": "web-read",
  "spiffe_id_pattern": "spiffe://spike.local/app/web",
  "path_pattern": "apps/web/**",
  "permissions": [
    "read",
    "list"
  ],
  "created_at": "2025-03-04T05:06:07Z",
  "updated_at": "2025-04-05T06:07:08Z",
  "updated_by": "spiffe://spike.local/spike/pilot"
}
`,
			wantRequests: put(webRead),
		},
		{
			name:         "put passes unknown permissions and bad patterns to Nexus",
			args:         []string{"policy", "put", "odd", "--spiffe-id", "web", "--path", "apps/[", "--perm", "read,fly,"},
			serverErr:    connect.NewError(connect.CodeInvalidArgument, errors.New(`permissions: unknown permission "fly"`)),
			wantCode:     2,
			wantStderr:   "spike: permissions: unknown permission \"fly\"\n",
			wantRequests: put(&nexusv1.Policy{Name: "odd", SpiffeIdPattern: "web", PathPattern: "apps/[", Permissions: []string{"read", "fly", ""}}),
		},
		{
			name:       "put without flags",
			args:       []string{"policy", "put", "web-read", "--path", "apps/web/**"},
			wantCode:   1,
			wantStderr: "spike: missing --spiffe-id, --perm: a policy needs --spiffe-id, --path and --perm (or -f FILE)" + putUsage,
		},
		{
			name:       "put without NAME",
			args:       []string{"policy", "put", "--spiffe-id", webID, "--path", "apps/web/**", "--perm", "read"},
			wantCode:   1,
			wantStderr: "spike: missing NAME: give the policy's name, or the whole policy with -f FILE" + putUsage,
		},
		{
			name:       "put with two names",
			args:       []string{"policy", "put", "a", "b", "-f", "x.yaml"},
			wantCode:   1,
			wantStderr: "spike: too many arguments: expected NAME (or -f FILE), got 2" + putUsage,
		},
		{
			name:         "put -f yaml with aliases",
			args:         []string{"policy", "put", "-f", "$HOME/policy.yaml"},
			files:        map[string]string{"policy.yaml": policyYAML},
			wantStdout:   "stored policy web-read\n",
			wantRequests: put(webRead),
			wantAuth:     bearer,
		},
		{
			name:         "put -f json with the matching NAME",
			args:         []string{"policy", "put", "web-read", "--file=$HOME/policy.json"},
			files:        map[string]string{"policy.json": policyJSON},
			wantStdout:   "stored policy web-read\n",
			wantRequests: put(webRead),
		},
		{
			name:         "put -f - reads stdin",
			args:         []string{"policy", "put", "-f", "-", "-o", "yaml"},
			stdin:        policyYAML,
			wantStdout:   "name: web-read\nspiffe_id_pattern: spiffe://spike.local/app/web\npath_pattern: apps/web/**\npermissions:\n  - read\n  - list\ncreated_at: \"2025-03-04T05:06:07Z\"\nupdated_at: \"2025-04-05T06:07:08Z\"\nupdated_by: spiffe://spike.local/spike/pilot\n",
			wantRequests: put(webRead),
		},
		{
			name:         "put -f - JSON on stdin, NAME from the command line",
			args:         []string{"policy", "put", "web-read", "-f", "-"},
			stdin:        `{"spiffe_id": "spiffe://spike.local/app/web", "path": "apps/web/**", "permissions": "read, list"}`,
			wantStdout:   "stored policy web-read\n",
			wantRequests: put(webRead),
		},
		{
			name: "put -f ignores what get adds",
			args: []string{"policy", "put", "-f", "-"},
			stdin: policyYAML + `created_at: "2025-03-04T05:06:07Z"
updated_at: "2025-04-05T06:07:08Z"
updated_by: spiffe://spike.local/spike/pilot
`,
			wantStdout:   "stored policy web-read\n",
			wantRequests: put(webRead),
		},
		{
			name:       "put -f unknown fields",
			args:       []string{"policy", "put", "-f", "$HOME/policy.yaml"},
			files:      map[string]string{"policy.yaml": policyYAML + "perms: [write]\nowner: team-a\n"},
			wantCode:   1,
			wantStderr: "spike: $HOME/policy.yaml has unknown fields \"perms\", \"owner\"; " + fileKeys + putUsage,
		},
		{
			name:       "put -f unknown field in JSON on stdin",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      `{"name": "x", "spiffeid": "spiffe://spike.local/x", "path": "x", "permissions": ["read"]}`,
			wantCode:   1,
			wantStderr: "spike: stdin has unknown field \"spiffeid\"; " + fileKeys + putUsage,
		},
		{
			name:       "put -f NAME mismatch",
			args:       []string{"policy", "put", "web-write", "-f", "$HOME/policy.yaml"},
			files:      map[string]string{"policy.yaml": policyYAML},
			wantCode:   1,
			wantStderr: "spike: NAME \"web-write\" differs from the name \"web-read\" in $HOME/policy.yaml; leave NAME out or make them match" + putUsage,
		},
		{
			name:       "put -f without any name",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      "spiffe_id: spiffe://spike.local/app/web\npath: apps/web/**\npermissions: [read]\n",
			wantCode:   1,
			wantStderr: "spike: the policy in stdin has no name: add name: to it, or give NAME" + putUsage,
		},
		{
			name:       "put -f missing fields",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      "name: web-read\nspiffe_id: spiffe://spike.local/app/web\n",
			wantCode:   1,
			wantStderr: "spike: the policy in stdin has no path_pattern, permissions; " + fileKeys + putUsage,
		},
		{
			name:       "put -f alias and key both given",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      "name: web-read\npath: a\npath_pattern: b\n",
			wantCode:   1,
			wantStderr: "spike: stdin: line 3: path and path_pattern are the same field; give only one" + putUsage,
		},
		{
			name:       "put -f with a list as name",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      "name: [a, b]\n",
			wantCode:   1,
			wantStderr: "spike: stdin: line 1: name must be a string" + putUsage,
		},
		{
			name:         "put -f not YAML",
			args:         []string{"policy", "put", "-f", "-"},
			stdin:        "name: web-read\n  path: [\n",
			wantCode:     1,
			wantInStderr: []string{"spike: stdin does not hold a policy in YAML or JSON: ", putUsage},
		},
		{
			name:       "put -f a list",
			args:       []string{"policy", "put", "-f", "-"},
			stdin:      "- name: web-read\n",
			wantCode:   1,
			wantStderr: "spike: stdin must hold one policy, an object with name, spiffe_id_pattern (or spiffe_id), path_pattern (or path) and permissions" + putUsage,
		},
		{
			name:       "put -f empty",
			args:       []string{"policy", "put", "-f", "-"},
			wantCode:   1,
			wantStderr: "spike: stdin is empty; a policy has name, spiffe_id_pattern (or spiffe_id), path_pattern (or path) and permissions" + putUsage,
		},
		{
			name:       "put -f missing file",
			args:       []string{"policy", "put", "-f", "$HOME/nope.yaml"},
			wantCode:   1,
			wantStderr: "spike: read the policy: open $HOME/nope.yaml: no such file or directory\n",
		},
		{
			name:       "put -f with flags",
			args:       []string{"policy", "put", "-f", "-", "--perm", "read"},
			stdin:      policyYAML,
			wantCode:   1,
			wantStderr: "spike: -f takes the whole policy from the file; do not combine it with --spiffe-id, --path or --perm" + putUsage,
		},

		{
			name: "get",
			args: []string{"policy", "get", "web-read"},
			wantStdout: `Name:               web-read
SPIFFE ID pattern:  spiffe://spike.local/app/web
Path pattern:       apps/web/**
Permissions:        read, list
Created:            2025-03-04T05:06:07Z
Updated:            2025-04-05T06:07:08Z by spiffe://spike.local/spike/pilot
`,
			wantRequests: []proto.Message{&nexusv1.GetPolicyRequest{Name: "web-read"}},
			wantAuth:     bearer,
		},
		{
			name: "get json",
			args: []string{"policy", "get", "ci", "-o", "json"},
			wantStdout: `{
  "name": "ci",
  "spiffe_id_pattern": "spiffe://spike.local/ci/*",
  "path_pattern": "apps/*/deploy",
  "permissions": [
    "read"
  ],
  "created_at": "2025-03-04T05:06:07Z",
  "updated_at": "2025-03-04T05:06:07Z",
  "updated_by": "spiffe://spike.local/spike/pilot"
}
`,
			wantRequests: []proto.Message{&nexusv1.GetPolicyRequest{Name: "ci"}},
		},
		{
			name:         "get yaml",
			args:         []string{"policy", "get", "web-read", "-o", "yaml"},
			wantStdout:   "name: web-read\nspiffe_id_pattern: spiffe://spike.local/app/web\npath_pattern: apps/web/**\npermissions:\n  - read\n  - list\ncreated_at: \"2025-03-04T05:06:07Z\"\nupdated_at: \"2025-04-05T06:07:08Z\"\nupdated_by: spiffe://spike.local/spike/pilot\n",
			wantRequests: []proto.Message{&nexusv1.GetPolicyRequest{Name: "web-read"}},
		},
		{
			name:         "get missing",
			args:         []string{"policy", "get", "nope"},
			wantCode:     2,
			wantStderr:   "spike: policy nope not found\n",
			wantRequests: []proto.Message{&nexusv1.GetPolicyRequest{Name: "nope"}},
		},
		{
			name:       "get without NAME",
			args:       []string{"policy", "get"},
			wantCode:   1,
			wantStderr: "spike: missing arguments: expected NAME\nRun 'spike policy get --help' for usage.\n",
		},

		{
			name: "list",
			args: []string{"policy", "list"},
			wantStdout: `NAME      SPIFFE ID PATTERN             PATH PATTERN   PERMISSIONS
ci        spiffe://spike.local/ci/*     apps/*/deploy  read
web-read  spiffe://spike.local/app/web  apps/web/**    read, list
`,
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
			wantAuth:     bearer,
		},
		{
			name:    "list with invalid policies",
			args:    []string{"policy", "list"},
			invalid: []string{"evil", "tampered"},
			wantStdout: `NAME      SPIFFE ID PATTERN             PATH PATTERN   PERMISSIONS
ci        spiffe://spike.local/ci/*     apps/*/deploy  read
web-read  spiffe://spike.local/app/web  apps/web/**    read, list
`,
			wantStderr: `spike: warning: stored policies that failed authentication (edited outside SPIKE; they grant nothing):
  evil
  tampered
Remove them with 'spike policy delete NAME' and put again any that you need.
`,
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
		},
		{
			name:    "list json with invalid policies",
			args:    []string{"policy", "list", "-o", "json"},
			invalid: []string{"evil"},
			wantStdout: `{
  "policies": [
    {
      "name": "ci",
      "spiffe_id_pattern": "spiffe://spike.local/ci/*",
      "path_pattern": "apps/*/deploy",
      "permissions": [
        "read"
      ],
      "created_at": "2025-03-04T05:06:07Z",
      "updated_at": "2025-03-04T05:06:07Z",
      "updated_by": "spiffe://spike.local/spike/pilot"
    },
    {
      "name": "web-read",
      "spiffe_id_pattern": "spiffe://spike.local/app/web",
      "path_pattern": "apps/web/**",
      "permissions": [
        "read",
        "list"
      ],
      "created_at": "2025-03-04T05:06:07Z",
      "updated_at": "2025-04-05T06:07:08Z",
      "updated_by": "spiffe://spike.local/spike/pilot"
    }
  ],
  "invalid_policies": [
    "evil"
  ]
}
`,
			wantInStderr: []string{"spike: warning: stored policies that failed authentication (edited outside SPIKE; they grant nothing):\n  evil\n"},
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
		},
		{
			name:         "list yaml",
			args:         []string{"policy", "list", "-o", "yaml"},
			anyStdout:    true, // checked below: yaml of the same document
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
		},
		{
			name:         "list refused",
			args:         []string{"policy", "list"},
			serverErr:    connect.NewError(connect.CodePermissionDenied, errors.New("spiffe://spike.local/app/web may not manage policies")),
			wantCode:     2,
			wantStderr:   "spike: spiffe://spike.local/app/web may not manage policies\n",
			wantRequests: []proto.Message{&nexusv1.ListPoliciesRequest{}},
		},

		{
			name:         "delete",
			args:         []string{"policy", "delete", "ci"},
			wantStdout:   "deleted policy ci\n",
			wantRequests: []proto.Message{&nexusv1.DeletePolicyRequest{Name: "ci"}},
			wantAuth:     bearer,
		},
		{
			name:         "delete yaml",
			args:         []string{"policy", "delete", "ci", "-o", "yaml"},
			wantStdout:   "name: ci\ndeleted: true\n",
			wantRequests: []proto.Message{&nexusv1.DeletePolicyRequest{Name: "ci"}},
		},
		{
			name:         "delete missing",
			args:         []string{"policy", "delete", "nope", "-o", "json"},
			wantCode:     2,
			wantStderr:   `{"code":"not_found","message":"policy nope not found","exit":2}` + "\n",
			wantRequests: []proto.Message{&nexusv1.DeletePolicyRequest{Name: "nope"}},
		},

		{
			name:         "check",
			args:         []string{"policy", "check", webID, "apps/web/db"},
			wantStdout:   "spiffe://spike.local/app/web on apps/web/db: read, list\n  granted by web-read: read, list\n  granted by web-list: list\n",
			wantRequests: []proto.Message{&nexusv1.CheckAccessRequest{SpiffeId: webID, Path: "apps/web/db"}},
			wantAuth:     bearer,
		},
		{
			name:         "check no access",
			args:         []string{"policy", "check", otherID, "apps/web/db"},
			wantStdout:   "spiffe://spike.local/app/other on apps/web/db: no access\n",
			wantRequests: []proto.Message{&nexusv1.CheckAccessRequest{SpiffeId: otherID, Path: "apps/web/db"}},
		},
		{
			name:         "check admin",
			args:         []string{"policy", "check", pilotID, "apps/web/db"},
			wantStdout:   "spiffe://spike.local/spike/pilot on apps/web/db: admin: may do everything with a valid admin token\n",
			wantRequests: []proto.Message{&nexusv1.CheckAccessRequest{SpiffeId: pilotID, Path: "apps/web/db"}},
		},
		{
			name: "check json",
			args: []string{"policy", "check", webID, "apps/web/db", "-o", "json"},
			wantStdout: `{
  "spiffe_id": "spiffe://spike.local/app/web",
  "path": "apps/web/db",
  "permissions": [
    "read",
    "list"
  ],
  "grants": [
    {
      "policy": "web-read",
      "permissions": [
        "read",
        "list"
      ]
    },
    {
      "policy": "web-list",
      "permissions": [
        "list"
      ]
    }
  ],
  "admin": false
}
`,
			wantRequests: []proto.Message{&nexusv1.CheckAccessRequest{SpiffeId: webID, Path: "apps/web/db"}},
		},
		{
			name:         "check yaml, no access",
			args:         []string{"policy", "check", otherID, "apps/x", "-o", "yaml"},
			wantStdout:   "spiffe_id: spiffe://spike.local/app/other\npath: apps/x\npermissions: []\ngrants: []\nadmin: false\n",
			wantRequests: []proto.Message{&nexusv1.CheckAccessRequest{SpiffeId: otherID, Path: "apps/x"}},
		},
		{
			name:       "check without PATH",
			args:       []string{"policy", "check", webID},
			wantCode:   1,
			wantStderr: "spike: missing arguments: expected SPIFFE_ID and PATH\nRun 'spike policy check --help' for usage.\n",
		},
	}
	for i := range cases {
		cases[i].token = token
	}
	runCases(t, cases)
}

// TestPolicyGetPutRoundTrip checks that what 'policy get -o yaml' and
// '-o json' print is a policy file that 'policy put -f' reads back.
func TestPolicyGetPutRoundTrip(t *testing.T) {
	t.Parallel()
	want := demoPolicies()["web-read"]
	for _, format := range []string{formatYAML, formatJSON} {
		var out strings.Builder
		if err := writePolicy(&out, format, want); err != nil {
			t.Fatal(err)
		}
		got, present, err := parsePolicy([]byte(out.String()), "policy."+format)
		if err != nil {
			t.Fatalf("%s: parsePolicy(): %v", format, err)
		}
		wantBack := &nexusv1.Policy{Name: want.GetName(), SpiffeIdPattern: want.GetSpiffeIdPattern(), PathPattern: want.GetPathPattern(), Permissions: want.GetPermissions()}
		if diff := cmp.Diff(wantBack, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: round trip mismatch (-want +got):\n%s", format, diff)
		}
		if len(missingFields(present, fileKeyNames)) != 0 || !present[fieldName] {
			t.Errorf("%s: fields present = %v", format, present)
		}
	}
}

// TestPolicyListYAML checks that -o yaml prints the same document as -o
// json.
func TestPolicyListYAML(t *testing.T) {
	t.Parallel()
	url := (&fakeNexus{invalid: []string{"evil"}}).serve(t)
	got := mustRunSpike(t, url, "", "policy", "list", "-o", "yaml")
	want := `policies:
  - name: ci
    spiffe_id_pattern: spiffe://spike.local/ci/*
    path_pattern: apps/*/deploy
    permissions:
      - read
    created_at: "2025-03-04T05:06:07Z"
    updated_at: "2025-03-04T05:06:07Z"
    updated_by: spiffe://spike.local/spike/pilot
  - name: web-read
    spiffe_id_pattern: spiffe://spike.local/app/web
    path_pattern: apps/web/**
    permissions:
      - read
      - list
    created_at: "2025-03-04T05:06:07Z"
    updated_at: "2025-04-05T06:07:08Z"
    updated_by: spiffe://spike.local/spike/pilot
invalid_policies:
  - evil
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policy list -o yaml mismatch (-want +got):\n%s", diff)
	}
}

// TestPolicyListEmpty checks the table and documents of an empty list.
func TestPolicyListEmpty(t *testing.T) {
	t.Parallel()
	empty := &nexusv1.ListPoliciesResponse{}
	tests := map[string]string{
		formatTable: "no policies\n",
		formatJSON:  "{\n  \"policies\": [],\n  \"invalid_policies\": []\n}\n",
		formatYAML:  "policies: []\ninvalid_policies: []\n",
	}
	for format, want := range tests {
		var out strings.Builder
		if err := writePolicies(&out, format, empty); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, out.String()); diff != "" {
			t.Errorf("%s mismatch (-want +got):\n%s", format, diff)
		}
	}
}
