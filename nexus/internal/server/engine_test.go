package server_test

import (
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

func ptr[T any](v T) *T { return &v }

func TestPatchAndRollback(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	s.put("p", map[string]string{"a": "1", "b": "2"})

	resp, err := c.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: "p", Data: map[string]string{"b": "20", "c": "3"}}))
	if err != nil || resp.Msg.GetVersion() != 2 {
		t.Fatalf("patch = %v, %v", resp, err)
	}
	got, err := s.get("p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1", "b": "20", "c": "3"}, got.GetData()); diff != "" {
		t.Errorf("patched data (-want +got):\n%s", diff)
	}
	_, err = c.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: "p", Data: map[string]string{"a": "x"}, Cas: ptr[int64](1)}))
	wantCode(t, err, connect.CodeFailedPrecondition, "check-and-set failed: p is at version 2, you expected 1")
	_, err = c.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: "nope", Data: map[string]string{"a": "x"}}))
	wantCode(t, err, connect.CodeNotFound, "secret nope not found")

	rb, err := c.RollbackSecret(ctx, connect.NewRequest(&nexusv1.RollbackSecretRequest{Path: "p", Version: 1}))
	if err != nil || rb.Msg.GetVersion() != 3 {
		t.Fatalf("rollback = %v, %v", rb, err)
	}
	got, err = s.get("p", 0)
	if err != nil || !cmp.Equal(map[string]string{"a": "1", "b": "2"}, got.GetData()) || got.GetVersion() != 3 {
		t.Fatalf("after rollback: %v, %v", got, err)
	}
	if _, err := c.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: "p", Versions: []int64{2}})); err != nil {
		t.Fatal(err)
	}
	_, err = c.RollbackSecret(ctx, connect.NewRequest(&nexusv1.RollbackSecretRequest{Path: "p", Version: 2}))
	wantCode(t, err, connect.CodeNotFound, "version 2 of p was destroyed")

	// A secret that requires check-and-set refuses patches without one.
	if _, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "p", CasRequired: ptr(true)})); err != nil {
		t.Fatal(err)
	}
	_, err = c.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: "p", Data: map[string]string{"a": "x"}}))
	wantCode(t, err, connect.CodeFailedPrecondition, "check-and-set is required for p")
	_, err = c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "p", Data: map[string]string{"a": "x"}}))
	wantCode(t, err, connect.CodeFailedPrecondition, "check-and-set is required for p")
	if _, err := c.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: "p", Data: map[string]string{"a": "x"}, Cas: ptr[int64](3)})); err != nil {
		t.Fatal(err)
	}
}

func TestVersionStates(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	for range 3 {
		s.put("v", map[string]string{"k": "v"})
	}
	if _, err := c.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: "v", Versions: []int64{1}})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: "v", Versions: []int64{2}})); err != nil {
		t.Fatal(err)
	}
	_, err := s.get("v", 1)
	wantCode(t, err, connect.CodeNotFound, "version 1 of v was deleted")
	_, err = s.get("v", 2)
	wantCode(t, err, connect.CodeNotFound, "version 2 of v was destroyed")
	_, err = c.UndeleteSecret(ctx, connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: "v", Versions: []int64{2}}))
	wantCode(t, err, connect.CodeFailedPrecondition, "version 2 of v was destroyed: it cannot be restored")
	if _, err := c.UndeleteSecret(ctx, connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: "v", Versions: []int64{1}})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.get("v", 1); err != nil {
		t.Fatalf("undeleted version: %v", err)
	}
	md, err := c.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: "v"}))
	if err != nil {
		t.Fatal(err)
	}
	var states []nexusv1.VersionState
	for _, v := range md.Msg.GetMetadata().GetVersions() {
		states = append(states, v.GetState())
	}
	want := []nexusv1.VersionState{nexusv1.VersionState_VERSION_STATE_ACTIVE, nexusv1.VersionState_VERSION_STATE_DESTROYED, nexusv1.VersionState_VERSION_STATE_ACTIVE}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("version states (-want +got):\n%s", diff)
	}
	var sealedLeft int
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM secret_versions WHERE path = 'v' AND sealed IS NOT NULL`).Scan(&sealedLeft); err != nil {
		t.Fatal(err)
	}
	if sealedLeft != 2 {
		t.Errorf("%d versions hold sealed data after destroying one of 3", sealedLeft)
	}

	if _, err := c.DeleteSecretMetadata(ctx, connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: "v"})); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM secret_versions WHERE path = 'v'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d version rows left after delete metadata (%v)", rows, err)
	}
	_, err = s.get("v", 0)
	wantCode(t, err, connect.CodeNotFound, "secret v not found")
}

func TestCustomMetadataIsSealed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	custom := map[string]string{"owner": "CUSTOM-MARKER-4d1e", "team": "payments"}
	up, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{
		Path: "m", MaxVersions: ptr[int32](3), CustomMetadata: &nexusv1.CustomMetadata{Entries: custom},
	}))
	if err != nil {
		t.Fatal(err)
	}
	m := up.Msg.GetMetadata()
	if m.GetMaxVersions() != 3 || m.GetEffectiveMaxVersions() != 3 || !cmp.Equal(custom, m.GetCustomMetadata()) || m.GetCurrentVersion() != 0 {
		t.Fatalf("metadata = %v", m)
	}
	var stored, head []byte
	if err := s.db().QueryRow(ctx, `SELECT custom_metadata, head FROM secrets WHERE path = 'm'`).Scan(&stored, &head); err != nil {
		t.Fatal(err)
	}
	if stored != nil || len(head) == 0 || strings.Contains(string(head), "CUSTOM-MARKER") {
		t.Fatalf("custom metadata stored as %q, head %q", stored, head)
	}
	// Moved to another secret's row, the head no longer opens.
	if _, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "other", MaxVersions: ptr[int32](3)})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db().Exec(ctx, `UPDATE secrets o SET head = m.head, incarnation = m.incarnation FROM secrets m WHERE m.path = 'm' AND o.path = 'other'`); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: "other"}))
	wantCode(t, err, connect.CodeDataLoss, "the head of secret other failed authentication")
	// Clearing works, and leaves the other settings alone.
	up, err = c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "m", CustomMetadata: &nexusv1.CustomMetadata{}}))
	if err != nil || len(up.Msg.GetMetadata().GetCustomMetadata()) != 0 || up.Msg.GetMetadata().GetMaxVersions() != 3 {
		t.Fatalf("after clearing: %v, %v", up.Msg.GetMetadata(), err)
	}
}

func TestListPages(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	for _, p := range []string{"l/a", "l/b", "l/c/d", "l/e", "m/x"} {
		s.put(p, map[string]string{"k": "v"})
	}
	var all []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "l", PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.Msg.GetPaths()...)
		token = resp.Msg.GetNextPageToken()
		if token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("listing does not end")
		}
	}
	if diff := cmp.Diff([]string{"l/a", "l/b", "l/c/", "l/e"}, all); diff != "" {
		t.Errorf("paged directory listing (-want +got):\n%s", diff)
	}
	first, err := c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "l/", PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "m/", PageToken: first.Msg.GetNextPageToken()}))
	wantCode(t, err, connect.CodeInvalidArgument, "page_token")
	_, err = c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{PageToken: "!!not-base64"}))
	wantCode(t, err, connect.CodeInvalidArgument, "page_token")
}

// Every limit refuses with InvalidArgument naming the field, and writes
// nothing.
func TestLimitsRefuseAndWriteNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	ctx := t.Context()
	c := s.secrets(adminID)
	many := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m["k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26%26))] = "v"
		}
		return m
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"path with ..", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "a/../b", Data: map[string]string{"k": "v"}}))
			return err
		}, "path"},
		{"path too long", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: strings.Repeat("a", 513), Data: map[string]string{"k": "v"}}))
			return err
		}, "path"},
		{"bad key", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "x", Data: map[string]string{"bad key": "v"}}))
			return err
		}, "data"},
		{"too many keys", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "x", Data: many(257)}))
			return err
		}, "data"},
		{"value too large", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "x", Data: map[string]string{"k": strings.Repeat("v", 512<<10)}}))
			return err
		}, "data"},
		{"negative cas", func() error {
			_, err := c.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: "x", Data: map[string]string{"k": "v"}, Cas: ptr[int64](-1)}))
			return err
		}, "cas"},
		{"max versions", func() error {
			_, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "x", MaxVersions: ptr[int32](1001)}))
			return err
		}, "max_versions"},
		{"custom metadata keys", func() error {
			_, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "x", CustomMetadata: &nexusv1.CustomMetadata{Entries: many(65)}}))
			return err
		}, "custom_metadata"},
		{"custom metadata value", func() error {
			_, err := c.UpdateSecretMetadata(ctx, connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: "x", CustomMetadata: &nexusv1.CustomMetadata{Entries: map[string]string{"k": strings.Repeat("v", 513)}}}))
			return err
		}, "custom_metadata"},
		{"page size", func() error {
			_, err := c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{PageSize: 1001}))
			return err
		}, "page_size"},
		{"too many versions", func() error {
			_, err := c.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: "x", Versions: make([]int64, 101)}))
			return err
		}, "versions"},
		{"version zero", func() error {
			_, err := c.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: "x", Versions: []int64{0}}))
			return err
		}, "versions"},
		{"rollback without version", func() error {
			_, err := c.RollbackSecret(ctx, connect.NewRequest(&nexusv1.RollbackSecretRequest{Path: "x"}))
			return err
		}, "version"},
	}
	for _, tt := range tests {
		err := tt.call()
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.HasPrefix(errMessage(err), tt.field+":") {
			t.Errorf("%s: error = %v, want InvalidArgument starting %q", tt.name, err, tt.field+":")
		}
	}
	var secrets, versions int
	if err := s.db().QueryRow(ctx, `SELECT (SELECT count(*) FROM secrets), (SELECT count(*) FROM secret_versions)`).Scan(&secrets, &versions); err != nil {
		t.Fatal(err)
	}
	if secrets != 0 || versions != 0 {
		t.Errorf("refused requests wrote %d secrets and %d versions", secrets, versions)
	}
}

func errMessage(err error) string {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce.Message()
	}
	return ""
}
