package server_test

import (
	"fmt"
	"path"
	"sort"
	"testing"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// The allow/deny matrix over every secret RPC: callers × paths × operations
// through the real RPC stack. The expectations are written out by hand,
// not computed by the matcher under test. Before each cell the admin writes
// two fresh versions, so an allowed operation must succeed outright.
func TestPolicyMatrixAllRPCs(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.putPolicy("web", "spiffe://spike.local/app/web", "apps/web/**", "read", "list")
	s.putPolicy("web-config", "spiffe://spike.local/app/web", "apps/web/config", "write")
	s.putPolicy("ops", "spiffe://spike.local/ops", "apps/**", "delete", "meta")
	s.putPolicy("destroyer", "spiffe://spike.local/destroyer", "apps/web/*", "destroy")
	s.putPolicy("meta-only", "spiffe://spike.local/meta", "apps/web/db", "meta")
	s.putPolicy("janitor", "spiffe://spike.local/janitor", "apps/other/**", "meta", "destroy")

	callers := []string{"app/web", "ops", "destroyer", "meta", "janitor", "nobody"}
	paths := []string{"apps/web/db", "apps/web/config", "apps/other/db"}
	allowed := map[string]bool{}
	for _, cell := range []string{
		"app/web get apps/web/db", "app/web get apps/web/config", "app/web list apps/web/db", "app/web list apps/web/config",
		"app/web put apps/web/config", "app/web patch apps/web/config", "app/web rollback apps/web/config",
		"destroyer destroy apps/web/db", "destroyer destroy apps/web/config",
		"meta meta-get apps/web/db", "meta meta-custom apps/web/db",
		"janitor meta-get apps/other/db", "janitor meta-custom apps/other/db", "janitor meta-max apps/other/db",
		"janitor meta-delete apps/other/db", "janitor destroy apps/other/db",
	} {
		allowed[cell] = true
	}
	for _, p := range paths {
		for _, op := range []string{"delete", "undelete", "meta-get", "meta-custom"} {
			allowed["ops "+op+" "+p] = true
		}
	}

	// Each operation gets the two versions the admin has just written.
	ops := map[string]func(c nexusv1connect.SecretServiceClient, p string, v1, v2 int64) error{
		"get": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: p}))
			return err
		},
		"list": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.ListSecrets(t.Context(), connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: path.Dir(p) + "/"}))
			return err
		},
		"put": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{Path: p, Data: map[string]string{"k": "w"}}))
			return err
		},
		"patch": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.PatchSecret(t.Context(), connect.NewRequest(&nexusv1.PatchSecretRequest{Path: p, Data: map[string]string{"k": "p"}}))
			return err
		},
		"rollback": func(c nexusv1connect.SecretServiceClient, p string, v1, _ int64) error {
			_, err := c.RollbackSecret(t.Context(), connect.NewRequest(&nexusv1.RollbackSecretRequest{Path: p, Version: v1}))
			return err
		},
		"delete": func(c nexusv1connect.SecretServiceClient, p string, _, v2 int64) error {
			_, err := c.DeleteSecret(t.Context(), connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: p, Versions: []int64{v2}}))
			return err
		},
		"undelete": func(c nexusv1connect.SecretServiceClient, p string, _, v2 int64) error {
			_, err := c.UndeleteSecret(t.Context(), connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: p, Versions: []int64{v2}}))
			return err
		},
		"destroy": func(c nexusv1connect.SecretServiceClient, p string, _, v2 int64) error {
			_, err := c.DestroySecret(t.Context(), connect.NewRequest(&nexusv1.DestroySecretRequest{Path: p, Versions: []int64{v2}}))
			return err
		},
		"meta-get": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.GetSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: p}))
			return err
		},
		"meta-custom": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.UpdateSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{
				Path: p, CustomMetadata: &nexusv1.CustomMetadata{Entries: map[string]string{"owner": "x"}}}))
			return err
		},
		"meta-max": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.UpdateSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.UpdateSecretMetadataRequest{Path: p, MaxVersions: ptr[int32](5)}))
			return err
		},
		"meta-delete": func(c nexusv1connect.SecretServiceClient, p string, _, _ int64) error {
			_, err := c.DeleteSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.DeleteSecretMetadataRequest{Path: p}))
			return err
		},
	}
	var opNames []string
	for op := range ops {
		opNames = append(opNames, op)
	}
	sort.Strings(opNames)
	if len(opNames) != 12 {
		t.Fatalf("%d operations, want one per secret RPC (12)", len(opNames))
	}
	for _, caller := range callers {
		c := s.secrets(spiffeid.RequireFromPath(td, "/"+caller))
		for _, op := range opNames {
			for _, p := range paths {
				v1 := s.put(p, map[string]string{"k": "1"})
				v2 := s.put(p, map[string]string{"k": "2"})
				cell := fmt.Sprintf("%s %s %s", caller, op, p)
				err := ops[op](c, p, v1, v2)
				switch {
				case allowed[cell] && err != nil:
					t.Errorf("%s: want allowed, got %v", cell, err)
				case !allowed[cell] && connect.CodeOf(err) != connect.CodePermissionDenied:
					t.Errorf("%s: want PermissionDenied, got %v", cell, err)
				}
			}
		}
	}
}
