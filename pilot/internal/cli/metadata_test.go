package cli

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// TestRunMetadata runs the secret metadata commands against the fake Nexus.
func TestRunMetadata(t *testing.T) {
	t.Parallel()
	runCases(t, []cliCase{
		{
			name: "get",
			args: []string{"secret", "metadata", "get", "apps/demo/db"},
			wantStdout: `Path:             apps/demo/db
Current version:  3
Oldest version:   1
Max versions:     default (10)
CAS required:     yes
Created:          2025-03-04T05:06:07Z
Updated:          2025-04-05T06:07:08Z
Custom metadata:  owner=team-a
                  rotation=90d

VERSION  STATE      CREATED               CREATED BY                        DELETED/DESTROYED
1        destroyed  2025-03-04T05:06:07Z  spiffe://spike.local/spike/pilot  2025-04-05T06:07:08Z
2        deleted    2025-03-04T05:06:07Z  spiffe://spike.local/spike/pilot  2025-04-05T06:07:08Z
3        active     2025-04-05T06:07:08Z  spiffe://spike.local/spike/pilot  -
`,
			wantRequests: []proto.Message{&nexusv1.GetSecretMetadataRequest{Path: "apps/demo/db"}},
		},
		{
			name: "get yaml",
			args: []string{"secret", "metadata", "get", "apps/demo/db", "-o", "yaml"},
			wantStdout: `path: apps/demo/db
current_version: 3
oldest_version: 1
max_versions: 0
effective_max_versions: 10
cas_required: true
custom_metadata:
  owner: team-a
  rotation: 90d
created_at: "2025-03-04T05:06:07Z"
updated_at: "2025-04-05T06:07:08Z"
versions:
  - version: 1
    state: destroyed
    created_at: "2025-03-04T05:06:07Z"
    created_by: spiffe://spike.local/spike/pilot
    destroyed_at: "2025-04-05T06:07:08Z"
  - version: 2
    state: deleted
    created_at: "2025-03-04T05:06:07Z"
    created_by: spiffe://spike.local/spike/pilot
    deleted_at: "2025-04-05T06:07:08Z"
  - version: 3
    state: active
    created_at: "2025-04-05T06:07:08Z"
    created_by: spiffe://spike.local/spike/pilot
`,
			wantRequests: []proto.Message{&nexusv1.GetSecretMetadataRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "get not found",
			args:         []string{"secret", "metadata", "get", "apps/x"},
			serverErr:    connect.NewError(connect.CodeNotFound, errors.New("secret apps/x not found")),
			wantCode:     2,
			wantStderr:   "spike: secret apps/x not found\n",
			wantRequests: []proto.Message{&nexusv1.GetSecretMetadataRequest{Path: "apps/x"}},
		},
		{
			name: "put all settings",
			args: []string{"secret", "metadata", "put", "apps/demo/db", "--max-versions", "5", "--cas-required",
				"--custom", "owner=team-b", "--custom", "note=a,b=c", "-o", "json"},
			wantStdout: `{
  "path": "apps/demo/db",
  "current_version": 3,
  "oldest_version": 1,
  "max_versions": 5,
  "effective_max_versions": 5,
  "cas_required": true,
  "custom_metadata": {
    "note": "a,b=c",
    "owner": "team-b"
  },
  "created_at": "2025-03-04T05:06:07Z",
  "updated_at": "2025-04-05T06:07:08Z",
  "versions": [
    {
      "version": 1,
      "state": "destroyed",
      "created_at": "2025-03-04T05:06:07Z",
      "created_by": "spiffe://spike.local/spike/pilot",
      "destroyed_at": "2025-04-05T06:07:08Z"
    },
    {
      "version": 2,
      "state": "deleted",
      "created_at": "2025-03-04T05:06:07Z",
      "created_by": "spiffe://spike.local/spike/pilot",
      "deleted_at": "2025-04-05T06:07:08Z"
    },
    {
      "version": 3,
      "state": "active",
      "created_at": "2025-04-05T06:07:08Z",
      "created_by": "spiffe://spike.local/spike/pilot"
    }
  ]
}
`,
			wantRequests: []proto.Message{&nexusv1.UpdateSecretMetadataRequest{
				Path:           "apps/demo/db",
				MaxVersions:    proto.Int32(5),
				CasRequired:    proto.Bool(true),
				CustomMetadata: &nexusv1.CustomMetadata{Entries: map[string]string{"owner": "team-b", "note": "a,b=c"}},
			}},
		},
		{
			name:         "put --cas-required=false",
			args:         []string{"secret", "metadata", "put", "apps/demo/db", "--cas-required=false"},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.UpdateSecretMetadataRequest{Path: "apps/demo/db", CasRequired: proto.Bool(false)}},
		},
		{
			name:         "put --max-versions 0",
			args:         []string{"secret", "metadata", "put", "apps/demo/db", "--max-versions", "0"},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.UpdateSecretMetadataRequest{Path: "apps/demo/db", MaxVersions: proto.Int32(0)}},
		},
		{
			name:         "put --clear-custom",
			args:         []string{"secret", "metadata", "put", "apps/demo/db", "--clear-custom"},
			anyStdout:    true,
			wantRequests: []proto.Message{&nexusv1.UpdateSecretMetadataRequest{Path: "apps/demo/db", CustomMetadata: &nexusv1.CustomMetadata{}}},
		},
		{
			name:       "put --max-versions negative",
			args:       []string{"secret", "metadata", "put", "apps/demo/db", "--max-versions", "-1"},
			wantCode:   1,
			wantStderr: "spike: --max-versions must be 0 (Nexus's default) or more, got -1\nRun 'spike secret metadata put --help' for usage.\n",
		},
		{
			name:       "put --custom without equals sign",
			args:       []string{"secret", "metadata", "put", "apps/demo/db", "--custom", "s3cr3t"},
			wantCode:   1,
			wantStderr: "spike: --custom needs KEY=VALUE, got an argument without '='\nRun 'spike secret metadata put --help' for usage.\n",
		},
		{
			name:       "put --custom duplicate",
			args:       []string{"secret", "metadata", "put", "apps/demo/db", "--custom", "a=1", "--custom", "a=2"},
			wantCode:   1,
			wantStderr: "spike: --custom key \"a\" is given twice\nRun 'spike secret metadata put --help' for usage.\n",
		},
		{
			name:       "put --custom and --clear-custom",
			args:       []string{"secret", "metadata", "put", "apps/demo/db", "--custom", "a=1", "--clear-custom"},
			wantCode:   1,
			wantStderr: "spike: --custom replaces all custom metadata and --clear-custom removes it; give only one of them\nRun 'spike secret metadata put --help' for usage.\n",
		},
		{
			name:       "put nothing",
			args:       []string{"secret", "metadata", "put", "apps/demo/db"},
			wantCode:   1,
			wantStderr: "spike: nothing to change: give --max-versions, --cas-required, --custom or --clear-custom\nRun 'spike secret metadata put --help' for usage.\n",
		},
		{
			name:         "delete",
			args:         []string{"secret", "metadata", "delete", "apps/demo/db"},
			wantStdout:   "deleted apps/demo/db and all its versions\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretMetadataRequest{Path: "apps/demo/db"}},
		},
		{
			name:         "delete refused",
			args:         []string{"secret", "metadata", "delete", "apps/demo/db"},
			serverErr:    connect.NewError(connect.CodeFailedPrecondition, errors.New("SPIKE is sealed")),
			wantCode:     2,
			wantStderr:   "spike: SPIKE is sealed\n",
			wantRequests: []proto.Message{&nexusv1.DeleteSecretMetadataRequest{Path: "apps/demo/db"}},
		},
	})
}
