package cli

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

var (
	created = timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	updated = timestamppb.New(time.Date(2025, 4, 5, 6, 7, 8, 0, time.UTC))
)

const pilotID = "spiffe://spike.local/spike/pilot"

func demoMetadata() *nexusv1.SecretMetadata {
	return &nexusv1.SecretMetadata{
		Path:                 "apps/demo/db",
		CurrentVersion:       3,
		OldestVersion:        1,
		EffectiveMaxVersions: 10,
		CasRequired:          true,
		CustomMetadata:       map[string]string{"owner": "team-a", "rotation": "90d"},
		CreatedAt:            created,
		UpdatedAt:            updated,
		Versions: []*nexusv1.VersionMetadata{
			{Version: 1, State: nexusv1.VersionState_VERSION_STATE_DESTROYED, CreatedAt: created, CreatedBy: pilotID, DestroyedAt: updated},
			{Version: 2, State: nexusv1.VersionState_VERSION_STATE_DELETED, CreatedAt: created, CreatedBy: pilotID, DeletedAt: updated},
			{Version: 3, State: nexusv1.VersionState_VERSION_STATE_ACTIVE, CreatedAt: updated, CreatedBy: pilotID},
		},
	}
}

func demoSecret() *nexusv1.Secret {
	return &nexusv1.Secret{
		Path:      "apps/demo/db",
		Version:   1,
		Data:      map[string]string{"user": "admin", "pass": "s3cr3t", "dsn": "postgres://db?sslmode=require"},
		CreatedAt: created,
		CreatedBy: pilotID,
	}
}

func TestWriteOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(w io.Writer) error
		want  string
	}{
		{
			name:  "secret table",
			write: func(w io.Writer) error { return writeSecret(w, formatTable, demoSecret()) },
			want: `apps/demo/db (version 1, created 2025-03-04T05:06:07Z by spiffe://spike.local/spike/pilot)

KEY   VALUE
dsn   postgres://db?sslmode=require
pass  s3cr3t
user  admin
`,
		},
		{
			name: "secret table quotes control characters",
			write: func(w io.Writer) error {
				return writeSecret(w, formatTable, &nexusv1.Secret{
					Path:    "apps/pem",
					Version: 3,
					Data:    map[string]string{"cert": "line1\nline2", "tab\tkey": "v", "esc": "\x1b[31mred"},
				})
			},
			want: `apps/pem (version 3)

KEY         VALUE
cert        "line1\nline2"
esc         "\x1b[31mred"
"tab\tkey"  v
`,
		},
		{
			name:  "secret json",
			write: func(w io.Writer) error { return writeSecret(w, formatJSON, demoSecret()) },
			want: `{
  "path": "apps/demo/db",
  "version": 1,
  "data": {
    "dsn": "postgres://db?sslmode=require",
    "pass": "s3cr3t",
    "user": "admin"
  },
  "created_at": "2025-03-04T05:06:07Z",
  "created_by": "spiffe://spike.local/spike/pilot"
}
`,
		},
		{
			name:  "secret json without data",
			write: func(w io.Writer) error { return writeSecret(w, formatJSON, &nexusv1.Secret{Path: "a", Version: 2}) },
			want:  "{\n  \"path\": \"a\",\n  \"version\": 2,\n  \"data\": {}\n}\n",
		},
		{
			name: "put table",
			write: func(w io.Writer) error {
				return writePut(w, formatTable, &nexusv1.PutSecretResponse{Path: "apps/demo/db", Version: 4, CreatedAt: created})
			},
			want: "stored apps/demo/db version 4\n",
		},
		{
			name: "put json",
			write: func(w io.Writer) error {
				return writePut(w, formatJSON, &nexusv1.PutSecretResponse{Path: "apps/demo/db", Version: 4, CreatedAt: created})
			},
			want: "{\n  \"path\": \"apps/demo/db\",\n  \"version\": 4,\n  \"created_at\": \"2025-03-04T05:06:07Z\"\n}\n",
		},
		{
			name: "list table",
			write: func(w io.Writer) error {
				return writePaths(w, formatTable, []string{"apps/a", "apps/b"}, []string{"a", "b"}, nil)
			},
			want: "a\nb\n",
		},
		{
			name: "list table, a deleted secret",
			write: func(w io.Writer) error {
				return writePaths(w, formatTable, []string{"apps/a", "apps/b"}, []string{"a", "b"}, []string{"apps/b"})
			},
			want: "a\nb  (deleted)\n",
		},
		{
			name: "list json, a deleted secret",
			write: func(w io.Writer) error {
				return writePaths(w, formatJSON, []string{"apps/a", "apps/b"}, []string{"a", "b"}, []string{"apps/b"})
			},
			want: "{\n  \"paths\": [\n    \"apps/a\",\n    \"apps/b\"\n  ],\n  \"deleted\": [\n    \"apps/b\"\n  ]\n}\n",
		},
		{
			name:  "list table empty",
			write: func(w io.Writer) error { return writePaths(w, formatTable, nil, nil, nil) },
			want:  "",
		},
		{
			name: "list json",
			write: func(w io.Writer) error {
				return writePaths(w, formatJSON, []string{"apps/a", "apps/b"}, []string{"a", "b"}, nil)
			},
			want: "{\n  \"paths\": [\n    \"apps/a\",\n    \"apps/b\"\n  ]\n}\n",
		},
		{
			name:  "list json empty",
			write: func(w io.Writer) error { return writePaths(w, formatJSON, nil, nil, nil) },
			want:  "{\n  \"paths\": []\n}\n",
		},
		{
			name:  "delete one",
			write: func(w io.Writer) error { return writeVersions(w, formatTable, "deleted", "apps/a", []int64{3}) },
			want:  "deleted apps/a version 3\n",
		},
		{
			name:  "delete several",
			write: func(w io.Writer) error { return writeVersions(w, formatTable, "deleted", "apps/a", []int64{1, 2}) },
			want:  "deleted apps/a versions 1, 2\n",
		},
		{
			name:  "delete json",
			write: func(w io.Writer) error { return writeVersions(w, formatJSON, "deleted", "apps/a", []int64{1, 2}) },
			want:  "{\n  \"path\": \"apps/a\",\n  \"versions\": [\n    1,\n    2\n  ]\n}\n",
		},
		{
			name: "status table unsealed",
			write: func(w io.Writer) error {
				return writeStatus(w, formatTable, &nexusv1.StatusResponse{
					Initialized: true, SchemaVersion: 3, KeeperReachable: true, KeyringId: "ab12", NexusVersion: "v0.1.0",
				})
			},
			want: `Initialised:       yes
Sealed:            no
Schema version:    3
Keeper reachable:  yes
Keyring ID:        ab12
Nexus version:     v0.1.0
`,
		},
		{
			name: "status table sealed, keeper down",
			write: func(w io.Writer) error {
				return writeStatus(w, formatTable, &nexusv1.StatusResponse{
					Initialized: true, Sealed: true, SchemaVersion: 3, KeeperError: "connection refused", NexusVersion: "dev",
				})
			},
			want: `Initialised:       yes
Sealed:            yes
Schema version:    3
Keeper reachable:  no (connection refused)
Keyring ID:        -
Nexus version:     dev

SPIKE is sealed; unseal it with: echo '<password>' | spike operator unseal
`,
		},
		{
			name: "status json",
			write: func(w io.Writer) error {
				return writeStatus(w, formatJSON, &nexusv1.StatusResponse{
					Initialized: true, Sealed: true, SchemaVersion: 3, KeeperError: "connection refused", NexusVersion: "dev",
				})
			},
			want: `{
  "initialized": true,
  "sealed": true,
  "schema_version": 3,
  "keeper_reachable": false,
  "keeper_error": "connection refused",
  "keyring_id": "",
  "nexus_version": "dev",
  "keepers": []
}
`,
		},
		{
			name: "seal not confirmed by every Keeper",
			write: func(w io.Writer) error {
				return writeSeal(w, formatTable, &nexusv1.SealResponse{Keepers: []*nexusv1.KeeperStatus{
					{Url: "https://k1:8443", Reachable: true, SealedOnPurpose: true, SealConfirmed: true},
					{Url: "https://k2:8443", Error: "deadline_exceeded: Keeper did not answer"},
				}})
			},
			want: `SPIKE may NOT be sealed: not every Keeper confirmed it forgot the root key.
Keeper 1:  https://k1:8443  sealed on purpose
Keeper 2:  https://k2:8443  unreachable (deadline_exceeded: Keeper did not answer)

Unseal it with: echo '<password>' | spike operator unseal
`,
		},
		{
			name: "status table, three Keepers",
			write: func(w io.Writer) error {
				return writeStatus(w, formatTable, &nexusv1.StatusResponse{
					Initialized: true, SchemaVersion: 7, KeeperReachable: true, KeyringId: "ab12", NexusVersion: "dev",
					Keepers: []*nexusv1.KeeperStatus{
						{Url: "https://k1:8443", Reachable: true, HoldsKeyring: true, KeyringId: "ab12", ActiveKeyVersion: 2, Source: "peer https://k2:8443"},
						{Url: "https://k2:8443", Error: "unavailable: Keeper did not answer"},
						{Url: "https://k3:8443", Reachable: true},
					},
				})
			},
			want: `Initialised:       yes
Sealed:            no
Schema version:    7
Keeper reachable:  yes
Keyring ID:        ab12
Nexus version:     dev
Keeper 1:          https://k1:8443  holds the root key (version 2, from peer https://k2:8443)
Keeper 2:          https://k2:8443  unreachable (unavailable: Keeper did not answer)
Keeper 3:          https://k3:8443  sealed (waiting for a peer or an unseal)
`,
		},
		{
			name: "status json, one Keeper",
			write: func(w io.Writer) error {
				return writeStatus(w, formatJSON, &nexusv1.StatusResponse{
					Initialized: true, KeeperReachable: true, KeyringId: "ab12",
					Keepers: []*nexusv1.KeeperStatus{{Url: "https://k1:8443", Reachable: true, SealedOnPurpose: true}},
				})
			},
			want: `{
  "initialized": true,
  "sealed": false,
  "schema_version": 0,
  "keeper_reachable": true,
  "keeper_error": "",
  "keyring_id": "ab12",
  "nexus_version": "",
  "keepers": [
    {
      "url": "https://k1:8443",
      "reachable": true,
      "holds_keyring": false,
      "sealed_on_purpose": true
    }
  ]
}
`,
		},
		{
			name: "unseal",
			write: func(w io.Writer) error {
				return writeUnseal(w, formatTable, &nexusv1.UnsealResponse{KeyringId: "ab12"})
			},
			want: "SPIKE is unsealed. Keyring ID: ab12\n",
		},
		{
			name: "init json",
			write: func(w io.Writer) error {
				return writeInit(w, formatJSON, &nexusv1.InitResponse{KeyringId: "ab12"}, nil, true)
			},
			want: "{\n  \"keyring_id\": \"ab12\"\n}\n",
		},
		{
			name: "init with shares only",
			write: func(w io.Writer) error {
				return writeInit(w, formatTable, &nexusv1.InitResponse{KeyringId: "ab12", Shares: [][]byte{
					[]byte(fakeShare(1, 3, 2)), []byte(fakeShare(2, 3, 2)), []byte(fakeShare(3, 3, 2)),
				}}, &loginDoc{ExpiresAt: "2025-03-04T13:06:07Z", TokenFile: "/t"}, false)
			},
			want: `SPIKE is initialised and unsealed. Keyring ID: ab12
You are logged in until 2025-03-04T13:06:07Z (token in /t).

Next steps:
  - Hand out the shares below, one per person, and store them apart.
    After all Keepers restart, any 2 of them unseal SPIKE:
      spike operator unseal --shares
  - Log in again when the token expires: spike login --shares
  - Check the state:  spike operator status
  - Store a secret:   spike secret put apps/demo/db user=admin pass=s3cr3t
  - Read it back:     spike secret get apps/demo/db

Unseal key shares: any 2 of these 3 unseal SPIKE. They are shown only this
once and Nexus does not keep them. Give each to a different person and store
them apart (never two in one place): fewer than 2 reveal nothing, 2 are
the key.

  Share 1 of 3: spike-share-v1:ab12cd34:1-of-3:k2:PAYLOAD1
  Share 2 of 3: spike-share-v1:ab12cd34:2-of-3:k2:PAYLOAD2
  Share 3 of 3: spike-share-v1:ab12cd34:3-of-3:k2:PAYLOAD3
`,
		},
		{
			name: "init yaml with shares and a problem",
			write: func(w io.Writer) error {
				return writeInit(w, formatYAML, &nexusv1.InitResponse{KeyringId: "ab12", Shares: [][]byte{[]byte(fakeShare(1, 1, 1))}, Problem: "Keeper down"}, nil, true)
			},
			want: "keyring_id: ab12\nshares:\n  - spike-share-v1:ab12cd34:1-of-1:k1:PAYLOAD1\nproblem: Keeper down\n",
		},
		{
			name: "rekey to a password",
			write: func(w io.Writer) error {
				return writeRekey(w, formatTable, &nexusv1.RekeyResponse{KeyringId: "ab12", Epoch: 2}, true)
			},
			want: `SPIKE is rekeyed. Keyring ID: ab12, epoch 2.
From now on only the new password opens it (unseal, login): the old
password and every old share are refused. The root keys are unchanged.
A backup of the database taken before now still opens with the old credentials.
`,
		},
		{
			name: "rekey json",
			write: func(w io.Writer) error {
				return writeRekey(w, formatJSON, &nexusv1.RekeyResponse{KeyringId: "ab12", Epoch: 3, Shares: [][]byte{[]byte(fakeShare(1, 1, 1))}}, false)
			},
			want: "{\n  \"keyring_id\": \"ab12\",\n  \"epoch\": 3,\n  \"shares\": [\n    \"spike-share-v1:ab12cd34:1-of-1:k1:PAYLOAD1\"\n  ]\n}\n",
		},
		{
			name: "version",
			write: func(w io.Writer) error {
				return writeVersion(w, formatTable, versionDoc{Pilot: "v1.2.3", Nexus: "v1.2.4"})
			},
			want: "pilot: v1.2.3\nnexus: v1.2.4\n",
		},
		{
			name: "version, Nexus unknown",
			write: func(w io.Writer) error {
				return writeVersion(w, formatTable, versionDoc{Pilot: "v1.2.3", NexusError: "cannot reach Nexus"})
			},
			want: "pilot: v1.2.3\nnexus: unknown (cannot reach Nexus)\n",
		},
		{
			name: "version json, Nexus unknown",
			write: func(w io.Writer) error {
				return writeVersion(w, formatJSON, versionDoc{Pilot: "v1.2.3", NexusError: "cannot reach Nexus"})
			},
			want: "{\n  \"pilot\": \"v1.2.3\",\n  \"nexus\": \"\",\n  \"nexus_error\": \"cannot reach Nexus\"\n}\n",
		},
		{
			name: "version yaml",
			write: func(w io.Writer) error {
				return writeVersion(w, formatYAML, versionDoc{Pilot: "v1.2.3", Nexus: "v1.2.4"})
			},
			want: "pilot: v1.2.3\nnexus: v1.2.4\n",
		},
		{
			name:  "secret yaml",
			write: func(w io.Writer) error { return writeSecret(w, formatYAML, demoSecret()) },
			want: `path: apps/demo/db
version: 1
data:
  dsn: postgres://db?sslmode=require
  pass: s3cr3t
  user: admin
created_at: "2025-03-04T05:06:07Z"
created_by: spiffe://spike.local/spike/pilot
`,
		},
		{
			name:  "secret env",
			write: func(w io.Writer) error { return writeSecret(w, formatEnv, demoSecret()) },
			want:  "dsn='postgres://db?sslmode=require'\npass='s3cr3t'\nuser='admin'\n",
		},
		{
			name: "secret env quotes",
			write: func(w io.Writer) error {
				return writeSecret(w, formatEnv, &nexusv1.Secret{Data: map[string]string{
					"B": "it's \"x\" = $HOME `id` \\n", "A_1": "line1\nline2\n", "_e": "",
				}})
			},
			want: "A_1='line1\nline2\n'\nB='it'\\''s \"x\" = $HOME `id` \\n'\n_e=''\n",
		},
		{
			name: "patched",
			write: func(w io.Writer) error {
				return writeWritten(w, formatTable, "patched", writtenDoc{Path: "apps/a", Version: 4})
			},
			want: "patched apps/a version 4\n",
		},
		{
			name: "rolled back",
			write: func(w io.Writer) error {
				return writeWritten(w, formatTable, "rolled back", writtenDoc{Path: "apps/a", Version: 7, FromVersion: 2})
			},
			want: "rolled back apps/a to version 2 as version 7\n",
		},
		{
			name: "rolled back yaml",
			write: func(w io.Writer) error {
				return writeWritten(w, formatYAML, "rolled back", writtenDoc{Path: "apps/a", Version: 7, CreatedAt: "2025-03-04T05:06:07Z", FromVersion: 2})
			},
			want: "path: apps/a\nversion: 7\ncreated_at: \"2025-03-04T05:06:07Z\"\nfrom_version: 2\n",
		},
		{
			name:  "undeleted none",
			write: func(w io.Writer) error { return writeVersions(w, formatTable, "undeleted", "apps/a", nil) },
			want:  "no versions of apps/a were undeleted\n",
		},
		{
			name:  "destroyed yaml",
			write: func(w io.Writer) error { return writeVersions(w, formatYAML, "destroyed", "apps/a", []int64{1, 2}) },
			want:  "path: apps/a\nversions:\n  - 1\n  - 2\n",
		},
		{
			name: "list yaml",
			write: func(w io.Writer) error {
				return writePaths(w, formatYAML, []string{"apps/a", "apps/b/"}, []string{"a", "b/"}, nil)
			},
			want: "paths:\n  - apps/a\n  - apps/b/\n",
		},
		{
			name:  "list yaml empty",
			write: func(w io.Writer) error { return writePaths(w, formatYAML, nil, nil, nil) },
			want:  "paths: []\n",
		},
		{
			name:  "metadata table",
			write: func(w io.Writer) error { return writeMetadata(w, formatTable, demoMetadata()) },
			want: `Path:             apps/demo/db
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
		},
		{
			name: "metadata table without versions",
			write: func(w io.Writer) error {
				return writeMetadata(w, formatTable, &nexusv1.SecretMetadata{Path: "apps/new", MaxVersions: 5, EffectiveMaxVersions: 5})
			},
			want: `Path:             apps/new
Current version:  -
Oldest version:   -
Max versions:     5
CAS required:     no
Created:          -
Updated:          -
Custom metadata:  -

No versions.
`,
		},
		{
			name:  "metadata json",
			write: func(w io.Writer) error { return writeMetadata(w, formatJSON, demoMetadata()) },
			want: `{
  "path": "apps/demo/db",
  "current_version": 3,
  "oldest_version": 1,
  "max_versions": 0,
  "effective_max_versions": 10,
  "cas_required": true,
  "custom_metadata": {
    "owner": "team-a",
    "rotation": "90d"
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
		},
		{
			name:  "metadata yaml",
			write: func(w io.Writer) error { return writeMetadata(w, formatYAML, demoMetadata()) },
			want: `path: apps/demo/db
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
		},
		{
			name:  "metadata deleted",
			write: func(w io.Writer) error { return writeMetadataDeleted(w, formatTable, "apps/a") },
			want:  "deleted apps/a and all its versions\n",
		},
		{
			name:  "metadata deleted json",
			write: func(w io.Writer) error { return writeMetadataDeleted(w, formatJSON, "apps/a") },
			want:  "{\n  \"path\": \"apps/a\",\n  \"deleted\": true\n}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := tt.write(&buf); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("output mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
