package server_test

import (
	"testing"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// Storage is untrusted: whatever is edited, replayed from an older image or
// copied from another secret or incarnation in the database, a read or
// write of that secret is DataLoss naming it, never old data, and the other
// secrets still read.
func TestTamperedSecretStateIsDataLoss(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	c := s.secrets(adminID)
	ctx := t.Context()
	meta := func(path string, m *nexusv1.UpdateSecretMetadataRequest) {
		t.Helper()
		m.Path = path
		if _, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(m)); err != nil {
			t.Fatal(err)
		}
	}
	change := func(path string, versions []int64, destroy bool) {
		t.Helper()
		var err error
		if destroy {
			_, err = c.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: path, Versions: versions}))
		} else {
			_, err = c.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: path, Versions: versions}))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	three := func(path string) {
		for _, v := range []string{"one", "two", "three"} {
			s.put(path, map[string]string{"k": v})
		}
	}

	// Each case: its setup through the API, then the tampering in SQL.
	cases := []struct {
		name   string
		path   string
		setup  func(path string)
		tamper string // SQL; $1 is the path
	}{
		{"current_version lowered", "t/current", three,
			`UPDATE secrets SET current_version = 2 WHERE path = $1`},
		{"oldest_version moved", "t/oldest", three,
			`UPDATE secrets SET oldest_version = 2 WHERE path = $1`},
		{"destroyed version written back", "t/destroy", func(p string) {
			three(p)
			s.exec(`CREATE TABLE saved_destroy AS SELECT path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at FROM secret_versions WHERE path = 't/destroy' AND version = 3`)
			change(p, []int64{3}, true)
		}, `UPDATE secret_versions v SET sealed = o.sealed, destroyed_at = NULL FROM saved_destroy o
		    WHERE v.path = $1 AND v.version = o.version`},
		{"pruned version re-inserted", "t/pruned", func(p string) {
			meta(p, &nexusv1.UpdateSecretMetadataRequest{MaxVersions: ptr[int32](2)})
			s.put(p, map[string]string{"k": "one"})
			s.exec(`CREATE TABLE saved_pruned AS SELECT path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at FROM secret_versions WHERE path = 't/pruned'`)
			s.put(p, map[string]string{"k": "two"})
			s.put(p, map[string]string{"k": "three"})
		}, `INSERT INTO secret_versions (path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at)
		    SELECT path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at FROM saved_pruned WHERE path = $1`},
		{"version from an earlier incarnation", "t/reborn", func(p string) {
			s.put(p, map[string]string{"k": "old"})
			s.exec(`CREATE TABLE saved_reborn AS SELECT path, version, dek_id, sealed, created_by, created_at, deleted_at, destroyed_at FROM secret_versions WHERE path = 't/reborn'`)
			if _, err := c.DeleteSecretMetadata(ctx, connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: p})); err != nil {
				t.Fatal(err)
			}
			s.put(p, map[string]string{"k": "new"})
		}, `UPDATE secret_versions v SET sealed = o.sealed, dek_id = o.dek_id FROM saved_reborn o
		    WHERE v.path = $1 AND v.version = o.version`},
		{"soft delete undone", "t/undelete", func(p string) { three(p); change(p, nil, false) },
			`UPDATE secret_versions SET deleted_at = NULL WHERE path = $1`},
		{"soft delete added", "t/delete", three,
			`UPDATE secret_versions SET deleted_at = now() WHERE path = $1 AND version = 3`},
		{"cas_required turned off", "t/cas", func(p string) {
			meta(p, &nexusv1.UpdateSecretMetadataRequest{CasRequired: ptr(true)})
		}, `UPDATE secrets SET cas_required = false WHERE path = $1`},
		{"max_versions raised", "t/max", func(p string) {
			meta(p, &nexusv1.UpdateSecretMetadataRequest{MaxVersions: ptr[int32](2)})
			three(p)
		}, `UPDATE secrets SET max_versions = 50 WHERE path = $1`},
		{"created_by changed", "t/by", three,
			`UPDATE secret_versions SET created_by = 'spiffe://spike.local/mallory' WHERE path = $1`},
		{"older custom metadata replayed", "t/custom", func(p string) {
			s.put(p, map[string]string{"k": "v"})
			meta(p, &nexusv1.UpdateSecretMetadataRequest{CustomMetadata: &nexusv1.CustomMetadata{Entries: map[string]string{"owner": "a"}}})
			s.exec(`CREATE TABLE saved_custom AS SELECT path, head FROM secrets WHERE path = 't/custom'`)
			meta(p, &nexusv1.UpdateSecretMetadataRequest{CustomMetadata: &nexusv1.CustomMetadata{Entries: map[string]string{"owner": "b"}}})
			s.put(p, map[string]string{"k": "w"})
		}, `UPDATE secrets v SET head = o.head FROM saved_custom o WHERE v.path = $1 AND o.path = v.path`},
		{"version rows deleted", "t/norows", three,
			`DELETE FROM secret_versions WHERE path = $1`},
		{"sealed head removed", "t/nohead", three,
			`UPDATE secrets SET head = NULL, incarnation = NULL, current_version = 2 WHERE path = $1`},
		{"head copied from another secret", "t/copy", func(p string) {
			three(p)
			three("t/copy-source")
		}, `UPDATE secrets v SET head = o.head, incarnation = o.incarnation,
		        current_version = o.current_version, oldest_version = o.oldest_version
		    FROM secrets o WHERE v.path = $1 AND o.path = 't/copy-source'`},
	}
	for _, tc := range cases {
		tc.setup(tc.path)
	}
	s.put("t/untouched", map[string]string{"k": "fine"})
	for _, tc := range cases {
		if _, err := s.db().Exec(ctx, tc.tamper, tc.path); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.path
			_, err := s.get(tc.path, 0)
			wantCode(t, err, connect.CodeDataLoss, want)
			if tc.path == "t/reborn" {
				// Only the sealed value was swapped, which nothing but a
				// read of that value opens.
				return
			}
			_, err = c.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: tc.path}))
			wantCode(t, err, connect.CodeDataLoss, want)
			_, err = c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: tc.path, Data: map[string]string{"k": "x"}}))
			wantCode(t, err, connect.CodeDataLoss, want)
		})
	}
	if got, err := s.get("t/untouched", 0); err != nil || got.GetData()["k"] != "fine" {
		t.Fatalf("an untouched secret: %v, %v", got, err)
	}
	if got, err := s.get("t/copy-source", 0); err != nil || got.GetData()["k"] != "three" {
		t.Fatalf("the source of the copied head: %v, %v", got, err)
	}
}
