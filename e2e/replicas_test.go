package e2e_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
)

// secretsClient returns a new client, with its own connections, to replica
// i, acting as the admin.
func (s *stack) secretsClient(t *testing.T, i int) nexusv1connect.SecretServiceClient {
	t.Helper()
	src, err := s.ca.Source(identity.Pilot(td))
	if err != nil {
		t.Fatal(err)
	}
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(identity.Nexus(td))))
	return nexusv1connect.NewSecretServiceClient(httpClient, "https://"+s.nexusAddrs[i], bearer(s.adminToken))
}

// bearer sends token as the admin token.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// initialise runs `spike operator init`, which also logs the admin in.
func (s *stack) initialise(t *testing.T) {
	t.Helper()
	mustSpike(t, s.pilotEnv(t, 0, identity.Pilot(td)), "correct horse battery\n", "operator", "init")
	token, err := os.ReadFile(s.adminTokenFile)
	if err != nil || len(token) == 0 {
		t.Fatalf("init left no admin token in %s: %v", s.adminTokenFile, err)
	}
	s.adminToken = strings.TrimSpace(string(token))
}

func storedVersions(t *testing.T, dsn, path string) []int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), "SELECT version FROM secret_versions WHERE path = $1 ORDER BY version", path)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func span(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

// Two Nexus processes share one database; every guarantee must come from
// PostgreSQL, not from either process.
func TestTwoReplicas(t *testing.T) {
	st := startStack(t, 2)
	st.initialise(t)

	t.Run("64 concurrent puts make 64 versions, the newest 10 kept", func(t *testing.T) {
		const n, path = 64, "race/counter"
		clients := make([]nexusv1connect.SecretServiceClient, n)
		for i := range clients {
			clients[i] = st.secretsClient(t, i%2)
		}
		versions := make([]int64, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := clients[i].PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
					Path: path, Data: map[string]string{"writer": string(rune('A' + i%26))},
				}))
				if err != nil {
					t.Errorf("put %d: %v", i, err)
					return
				}
				versions[i] = resp.Msg.GetVersion()
			})
		}
		wg.Wait()
		slices.Sort(versions)
		if diff := cmp.Diff(span(1, n), versions); diff != "" {
			t.Fatalf("versions handed out (-want +got):\n%s", diff)
		}
		for i := range 2 {
			md, err := st.secretsClient(t, i).GetSecretMetadata(t.Context(), connect.NewRequest(&nexusv1.GetSecretMetadataRequest{Path: path}))
			if err != nil {
				t.Fatal(err)
			}
			m := md.Msg.GetMetadata()
			if m.GetCurrentVersion() != n || m.GetOldestVersion() != n-9 || len(m.GetVersions()) != 10 {
				t.Errorf("replica %d: current %d, oldest %d, %d versions; want %d, %d, 10",
					i, m.GetCurrentVersion(), m.GetOldestVersion(), len(m.GetVersions()), n, n-9)
			}
		}
		if diff := cmp.Diff(span(n-9, n), storedVersions(t, st.dsn, path)); diff != "" {
			t.Errorf("rows in secret_versions (-want +got):\n%s", diff)
		}
		_, err := st.secretsClient(t, 1).GetSecret(t.Context(), connect.NewRequest(&nexusv1.GetSecretRequest{Path: path, Version: 1}))
		if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no longer exists") {
			t.Errorf("reading pruned version 1: %v", err)
		}
	})

	t.Run("32 concurrent check-and-set writers, one winner", func(t *testing.T) {
		const n, path = 32, "race/cas"
		if _, err := st.secretsClient(t, 0).PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
			Path: path, Data: map[string]string{"v": "first"},
		})); err != nil {
			t.Fatal(err)
		}
		clients := make([]nexusv1connect.SecretServiceClient, n)
		for i := range clients {
			clients[i] = st.secretsClient(t, i%2)
		}
		var (
			wg              sync.WaitGroup
			mu              sync.Mutex
			wins, conflicts int
		)
		for i := range n {
			wg.Go(func() {
				cas := int64(1)
				_, err := clients[i].PutSecret(t.Context(), connect.NewRequest(&nexusv1.PutSecretRequest{
					Path: path, Data: map[string]string{"v": "second"}, Cas: &cas,
				}))
				mu.Lock()
				defer mu.Unlock()
				var ce *connect.Error
				switch {
				case err == nil:
					wins++
				case errors.As(err, &ce) && ce.Code() == connect.CodeFailedPrecondition &&
					strings.Contains(ce.Message(), "check-and-set failed: race/cas is at version 2, you expected 1"):
					conflicts++
				default:
					t.Errorf("writer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || conflicts != n-1 {
			t.Fatalf("%d writers won and %d conflicted, want 1 and %d", wins, conflicts, n-1)
		}
		if diff := cmp.Diff(span(1, 2), storedVersions(t, st.dsn, path)); diff != "" {
			t.Errorf("rows in secret_versions (-want +got):\n%s", diff)
		}
	})
}
