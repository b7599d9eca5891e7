package server_test

import (
	"testing"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// keyed returns a request carrying an idempotency key.
func keyed[T any](msg *T, key string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set("Idempotency-Key", key)
	return req
}

// A mutation repeated with its idempotency key returns the first outcome
// and is not applied again; the key cannot be reused for another request.
func TestRetriedWritesApplyOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	c := s.secrets(adminID)
	ctx := t.Context()
	const key = "retry-key-0123456789"

	put := &nexusv1.PutSecretRequest{Path: "apps/once", Data: map[string]string{"k": "v"}}
	first, err := c.PutSecret(ctx, keyed(put, key))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := c.PutSecret(ctx, keyed(put, key))
		if err != nil || again.Msg.GetVersion() != first.Msg.GetVersion() ||
			!again.Msg.GetCreatedAt().AsTime().Equal(first.Msg.GetCreatedAt().AsTime()) {
			t.Fatalf("retry = %v, %v; want the first outcome %v", again.Msg, err, first.Msg)
		}
	}
	md, err := c.GetSecretMetadata(ctx, connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: "apps/once"}))
	if err != nil || md.Msg.GetMetadata().GetCurrentVersion() != 1 {
		t.Fatalf("after retries: %v, %v; want one version", md.Msg, err)
	}
	// With check-and-set, the retry of a write that landed is not refused.
	casPut := &nexusv1.PutSecretRequest{Path: "apps/once", Data: map[string]string{"k": "w"}, Cas: ptr[int64](1)}
	for range 2 {
		got, err := c.PutSecret(ctx, keyed(casPut, "cas-key-0123456789ab"))
		if err != nil || got.Msg.GetVersion() != 2 {
			t.Fatalf("keyed cas put = %v, %v; want version 2 both times", got.Msg, err)
		}
	}
	// Patch and rollback read before they write: their retries, even with
	// check-and-set, get the first outcome too.
	patch := &nexusv1.PatchSecretRequest{Path: "apps/once", Data: map[string]string{"p": "1"}, Cas: ptr[int64](2)}
	rollback := &nexusv1.RollbackSecretRequest{Path: "apps/once", Version: 1, Cas: ptr[int64](3)}
	for range 2 {
		got, err := c.PatchSecret(ctx, keyed(patch, "patch-key-0123456789"))
		if err != nil || got.Msg.GetVersion() != 3 {
			t.Fatalf("keyed patch = %v, %v; want version 3 both times", got.Msg, err)
		}
	}
	for range 2 {
		got, err := c.RollbackSecret(ctx, keyed(rollback, "rollback-key-0123456789"))
		if err != nil || got.Msg.GetVersion() != 4 {
			t.Fatalf("keyed rollback = %v, %v; want version 4 both times", got.Msg, err)
		}
	}
	if got, err := s.get("apps/once", 0); err != nil || got.GetVersion() != 4 || got.GetData()["k"] != "v" {
		t.Fatalf("after the retried rollback: %v, %v; want version 4 holding version 1's data", got, err)
	}
	// The same key for another request is refused, and nothing is written.
	_, err = c.PutSecret(ctx, keyed(&nexusv1.PutSecretRequest{Path: "apps/once", Data: map[string]string{"k": "other"}}, key))
	wantCode(t, err, connect.CodeInvalidArgument, "already used for a different request")
	// Another caller's key space is its own; a malformed key is refused.
	_, err = c.PutSecret(ctx, keyed(put, "short"))
	wantCode(t, err, connect.CodeInvalidArgument, "Idempotency-Key: must be 16 to 64 characters")

	// Deleting twice with one key: the retry succeeds instead of NotFound.
	del := &nexusv1.DeleteSecretMetadataRequest{Path: "apps/once"}
	for range 2 {
		if _, err := c.DeleteSecretMetadata(ctx, keyed(del, "delete-key-0123456789")); err != nil {
			t.Fatalf("keyed delete: %v", err)
		}
	}
	_, err = c.DeleteSecretMetadata(ctx, connect.NewRequest(del))
	wantCode(t, err, connect.CodeNotFound, "secret apps/once not found")

	// Policies: the retry returns the first outcome.
	pol := &nexusv1.PutPolicyRequest{Policy: &nexusv1.Policy{Name: "p1", SpiffeIdPattern: "spiffe://spike.local/app/*", PathPattern: "apps/**", Permissions: []string{"read"}}}
	p1, err := nexusPolicyClientWith(s, s.token).PutPolicy(ctx, keyed(pol, "policy-key-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := nexusPolicyClientWith(s, s.token).PutPolicy(ctx, keyed(pol, "policy-key-0123456789"))
	if err != nil || !p2.Msg.GetPolicy().GetUpdatedAt().AsTime().Equal(p1.Msg.GetPolicy().GetUpdatedAt().AsTime()) {
		t.Fatalf("policy retry = %v, %v; want %v", p2.Msg, err, p1.Msg)
	}
	// A login takes no key: nothing derived from the password is kept.
	var before, after int
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM idempotency_keys`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := s.operatorWith(adminID, "").Login(ctx, keyed(&nexusv1.LoginRequest{Password: []byte(password)}, "login-key-0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM idempotency_keys`).Scan(&after); err != nil || after != before {
		t.Fatalf("a keyed login kept %d outcomes, %v", after-before, err)
	}
	// The stored outcome is authenticated: edited, it is DataLoss.
	s.exec(`UPDATE idempotency_keys SET outcome = convert_to('{"Version": 7}', 'UTF8') WHERE key = $1`, key)
	_, err = c.PutSecret(ctx, keyed(put, key))
	wantCode(t, err, connect.CodeDataLoss, "failed authentication")
}
