package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

const (
	// pathPrefix is where the benchmark's secrets live.
	pathPrefix = "bench/"
	// valueKey is the one key of each benchmark secret.
	valueKey = "v"
)

// spikeTarget reads and writes the benchmark's secrets through Nexus with
// the Connect client that workloads use.
type spikeTarget struct {
	secrets nexusv1connect.SecretServiceClient
	value   string
	paths   int
}

// newSpikeTarget returns a target calling Nexus at url as src's SVID, over
// HTTP/1.1 when http1 is set and HTTP/2 otherwise,
// accepting only a server with nexusID, and sending token as the admin
// bearer token unless it is "".
func newSpikeTarget(src *svid.Source, url string, nexusID spiffeid.ID, token string, valueSize, paths int, http1 bool) spikeTarget {
	httpClient := rpcclient.New(mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID)), rpcclient.Options{HTTP1: http1})
	opts := []connect.ClientOption{connect.WithInterceptors(rpcclient.Interceptor())}
	if token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(token)))
	}
	return spikeTarget{
		secrets: nexusv1connect.NewSecretServiceClient(httpClient, url, opts...),
		value:   randomValue(valueSize),
		paths:   paths,
	}
}

// bearer sends token as "Authorization: Bearer <token>" with every call.
func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

func benchPath(i int) string { return fmt.Sprintf("%sp%06d", pathPrefix, i) }

// seed writes every path once, so that gets find a secret, from up to 16
// goroutines.
func (t spikeTarget) seed(ctx context.Context) error {
	const workers = 16
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < t.paths && errs[w] == nil; i += workers {
				errs[w] = t.putPath(ctx, benchPath(i))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// get reads the latest version of a random path and checks its size.
func (t spikeTarget) get(ctx context.Context) error {
	path := benchPath(rand.IntN(t.paths))
	resp, err := t.secrets.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path}))
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	if n := len(resp.Msg.GetSecret().GetData()[valueKey]); n != len(t.value) {
		return fmt.Errorf("get %s: value of %d bytes, want %d", path, n, len(t.value))
	}
	return nil
}

// put writes a new version of a random path.
func (t spikeTarget) put(ctx context.Context) error {
	return t.putPath(ctx, benchPath(rand.IntN(t.paths)))
}

func (t spikeTarget) putPath(ctx context.Context, path string) error {
	_, err := t.secrets.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{
		Path: path,
		Data: map[string]string{valueKey: t.value},
	}))
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return nil
}

// randomValue returns n random letters and digits: a secret value must be
// UTF-8, and n bytes of it are n characters.
func randomValue(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(alphabet[rand.IntN(len(alphabet))])
	}
	return b.String()
}

// readToken returns the admin token in path, or "" when path is "" or no
// such file exists (as for Pilot: the caller is then a workload).
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("token file %s does not hold an admin token", path)
	}
	return token, nil
}
