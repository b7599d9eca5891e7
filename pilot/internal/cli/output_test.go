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

var created = timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))

func demoSecret() *nexusv1.Secret {
	return &nexusv1.Secret{
		Path:      "apps/demo/db",
		Version:   1,
		Data:      map[string]string{"user": "admin", "pass": "s3cr3t", "dsn": "postgres://db?sslmode=require"},
		CreatedAt: created,
		CreatedBy: "spiffe://spike.local/spike/pilot",
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
			name:  "list table",
			write: func(w io.Writer) error { return writePaths(w, formatTable, []string{"apps/a", "apps/b"}) },
			want:  "apps/a\napps/b\n",
		},
		{
			name:  "list table empty",
			write: func(w io.Writer) error { return writePaths(w, formatTable, nil) },
			want:  "",
		},
		{
			name:  "list json",
			write: func(w io.Writer) error { return writePaths(w, formatJSON, []string{"apps/a", "apps/b"}) },
			want:  "{\n  \"paths\": [\n    \"apps/a\",\n    \"apps/b\"\n  ]\n}\n",
		},
		{
			name:  "list json empty",
			write: func(w io.Writer) error { return writePaths(w, formatJSON, nil) },
			want:  "{\n  \"paths\": []\n}\n",
		},
		{
			name:  "delete one",
			write: func(w io.Writer) error { return writeDeleted(w, formatTable, "apps/a", []int64{3}) },
			want:  "deleted apps/a version 3\n",
		},
		{
			name:  "delete several",
			write: func(w io.Writer) error { return writeDeleted(w, formatTable, "apps/a", []int64{1, 2}) },
			want:  "deleted apps/a versions 1, 2\n",
		},
		{
			name:  "delete json",
			write: func(w io.Writer) error { return writeDeleted(w, formatJSON, "apps/a", []int64{1, 2}) },
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
  "nexus_version": "dev"
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
			name:  "init json",
			write: func(w io.Writer) error { return writeInit(w, formatJSON, &nexusv1.InitResponse{KeyringId: "ab12"}) },
			want:  "{\n  \"keyring_id\": \"ab12\"\n}\n",
		},
		{
			name:  "version",
			write: func(w io.Writer) error { return writeVersion(w, formatTable, "v1.2.3") },
			want:  "spike v1.2.3\n",
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
