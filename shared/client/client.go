package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"iter"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
	"github.com/spike-dev/spike/shared/identity"
	"github.com/spike-dev/spike/shared/mtls"
	"github.com/spike-dev/spike/shared/rpcclient"
	"github.com/spike-dev/spike/shared/svid"
)

// Client calls one Nexus as the workload its SVID names. It is safe for
// concurrent use; keep one for the life of the program, so that SVID
// rotations and connections are shared, and Close it at the end.
type Client struct {
	url    string
	src    *svid.Source
	ownSrc bool
	// unary serves single calls (rpcclient: idempotency keys, safe
	// retries); stream serves watches, which reconnect by themselves.
	unaryHTTP, streamHTTP *http.Client
	unary, stream         nexusv1connect.SecretServiceClient
	// closed is done once Close was called; it ends the calls and
	// watches in progress.
	closed context.Context //nolint:containedctx // the client's lifetime, not a request's context
	close  context.CancelFunc
	// closeOnce makes Close idempotent; closeErr is its first outcome.
	closeOnce sync.Once
	closeErr  error

	// leaf is the SVID certificate the last call saw (see noticeRotation).
	mu   sync.Mutex
	leaf *x509.Certificate
}

// New returns a client for the Nexus that cfg names. It loads the SVID
// first (from a SPIRE agent, ctx bounds the wait); nothing else goes over
// the network until the first call.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := checkURL(cfg.NexusURL); err != nil {
		return nil, fmt.Errorf("nexus URL: %w", err)
	}
	src, own := cfg.Source, false
	if src == nil {
		var err error
		if src, err = svid.NewSource(ctx, cfg.SVID); err != nil {
			return nil, err
		}
		own = true
	}
	nexusID := cfg.NexusID
	if nexusID.IsZero() {
		self, err := src.ID()
		if err != nil {
			if own {
				_ = src.Close()
			}
			return nil, fmt.Errorf("read the SVID: %w", err)
		}
		nexusID = identity.Nexus(self.TrustDomain())
	}
	tlsConf := mtls.ClientConfig(src, tlsconfig.AuthorizeID(nexusID))
	url := strings.TrimSuffix(cfg.NexusURL, "/")
	c := &Client{url: url, src: src, ownSrc: own, unaryHTTP: rpcclient.New(tlsConf, cfg.Retry), streamHTTP: streamClient(tlsConf)}
	c.unary = nexusv1connect.NewSecretServiceClient(c.unaryHTTP, url, connect.WithInterceptors(rpcclient.Interceptor()))
	c.stream = nexusv1connect.NewSecretServiceClient(c.streamHTTP, url)
	c.closed, c.close = context.WithCancel(context.Background())
	return c, nil
}

// streamClient is the HTTP/2 client of watches: no retries and no bound
// on the wait for an answer (a watch waits for changes), but HTTP/2 pings
// that find a dead connection within a minute.
func streamClient(tlsConf *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConf.Clone(),
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}}
}

// Close ends the client's watches, closes its connections and releases
// the SVID source it loaded (a Workload API connection). Calls made after
// Close, or cut short by it, fail with ErrClosed. Calling it again
// returns the first result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.close()
		c.unaryHTTP.CloseIdleConnections()
		c.streamHTTP.CloseIdleConnections()
		if c.ownSrc {
			c.closeErr = c.src.Close()
		}
	})
	return c.closeErr
}

// ID returns the SPIFFE ID the client presents: the one policies must
// name.
func (c *Client) ID() (spiffeid.ID, error) { return c.src.ID() }

// callCtx is ctx, also ended by Close.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if c.closed.Err() != nil {
		return nil, nil, ErrClosed
	}
	c.noticeRotation()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.closed, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// wrap is wrapError, except that a call that failed locally because the
// client was closed under it fails with ErrClosed.
func (c *Client) wrap(op, path string, err error) error {
	if err != nil && c.closed.Err() != nil && !connect.IsWireError(err) {
		err = ErrClosed
	}
	return wrapError(op, path, err)
}

// noticeRotation closes the idle connections once the SVID changed
// (rotated by SPIRE, or its files replaced), so that the next call
// presents the new certificate in a new handshake instead of riding on a
// connection made with the old one. A stream in progress keeps its
// connection until it ends.
func (c *Client) noticeRotation() {
	s, err := c.src.GetX509SVID()
	if err != nil || s == nil || len(s.Certificates) == 0 {
		return
	}
	leaf := s.Certificates[0]
	c.mu.Lock()
	changed := c.leaf != nil && !c.leaf.Equal(leaf)
	c.leaf = leaf
	c.mu.Unlock()
	if changed {
		c.unaryHTTP.CloseIdleConnections()
		c.streamHTTP.CloseIdleConnections()
	}
}

// Secret is one version of a secret.
type Secret struct {
	Path    string
	Version int64
	// Data is the secret's keys and values.
	Data      map[string]string
	CreatedAt time.Time
	// CreatedBy is the SPIFFE ID that wrote this version.
	CreatedBy string
}

// Get returns the latest version of the secret at path.
func (c *Client) Get(ctx context.Context, path string) (*Secret, error) {
	return c.GetVersion(ctx, path, 0)
}

// GetVersion returns the given version of the secret at path (0: the
// latest). It needs read permission. A read is retried until it gets an
// answer or the retries run out (ErrUnavailable).
func (c *Client) GetVersion(ctx context.Context, path string, version int64) (*Secret, error) {
	ctx, done, err := c.callCtx(ctx)
	if err != nil {
		return nil, c.wrap("get", path, err)
	}
	defer done()
	resp, err := c.unary.GetSecret(ctx, connect.NewRequest(&nexusv1.GetSecretRequest{Path: path, Version: version}))
	if err != nil {
		return nil, c.wrap("get", path, err)
	}
	s := resp.Msg.GetSecret()
	return &Secret{
		Path: s.GetPath(), Version: s.GetVersion(), Data: s.GetData(),
		CreatedAt: s.GetCreatedAt().AsTime(), CreatedBy: s.GetCreatedBy(),
	}, nil
}

// Version is what a write made: the new version of the secret.
type Version struct {
	Path      string
	Version   int64
	CreatedAt time.Time
}

// WriteOption changes a write.
type WriteOption func(*writeOptions)

type writeOptions struct{ cas *int64 }

// CAS makes a write check-and-set: it succeeds only if the secret's
// current version is version (0: only if it has no version yet), and
// fails with ErrConflict otherwise.
func CAS(version int64) WriteOption {
	return func(o *writeOptions) { o.cas = &version }
}

func writeOpts(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Put stores data as a new version of the secret at path. It needs write
// permission. The request carries an idempotency key, the same on every
// retry, so it is applied at most once; when no answer came back it fails
// with ErrOutcomeUnknown.
func (c *Client) Put(ctx context.Context, path string, data map[string]string, opts ...WriteOption) (Version, error) {
	ctx, done, err := c.callCtx(ctx)
	if err != nil {
		return Version{}, c.wrap("put", path, err)
	}
	defer done()
	resp, err := c.unary.PutSecret(ctx, connect.NewRequest(&nexusv1.PutSecretRequest{Path: path, Data: data, Cas: writeOpts(opts).cas}))
	if err != nil {
		return Version{}, c.wrap("put", path, err)
	}
	return Version{Path: resp.Msg.GetPath(), Version: resp.Msg.GetVersion(), CreatedAt: resp.Msg.GetCreatedAt().AsTime()}, nil
}

// Patch merges data into the latest version of the secret at path (the
// other keys are kept), as a new version. It needs read and write
// permission; as Put otherwise.
func (c *Client) Patch(ctx context.Context, path string, data map[string]string, opts ...WriteOption) (Version, error) {
	ctx, done, err := c.callCtx(ctx)
	if err != nil {
		return Version{}, c.wrap("patch", path, err)
	}
	defer done()
	resp, err := c.unary.PatchSecret(ctx, connect.NewRequest(&nexusv1.PatchSecretRequest{Path: path, Data: data, Cas: writeOpts(opts).cas}))
	if err != nil {
		return Version{}, c.wrap("patch", path, err)
	}
	return Version{Path: resp.Msg.GetPath(), Version: resp.Msg.GetVersion(), CreatedAt: resp.Msg.GetCreatedAt().AsTime()}, nil
}

// Delete soft-deletes versions of the secret at path (the latest when none
// is given) and returns the versions it deleted; Undelete brings them
// back. It needs delete permission.
func (c *Client) Delete(ctx context.Context, path string, versions ...int64) ([]int64, error) {
	return c.versionsCall(ctx, "delete", path, func(ctx context.Context) ([]int64, error) {
		resp, err := c.unary.DeleteSecret(ctx, connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: path, Versions: versions}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetVersions(), nil
	})
}

// Undelete restores soft-deleted versions of the secret at path (the
// latest when none is given) and returns the versions it restored.
func (c *Client) Undelete(ctx context.Context, path string, versions ...int64) ([]int64, error) {
	return c.versionsCall(ctx, "undelete", path, func(ctx context.Context) ([]int64, error) {
		resp, err := c.unary.UndeleteSecret(ctx, connect.NewRequest(&nexusv1.UndeleteSecretRequest{Path: path, Versions: versions}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetVersions(), nil
	})
}

// Destroy wipes the data of versions of the secret at path (the latest
// when none is given) for good and returns the versions it destroyed.
func (c *Client) Destroy(ctx context.Context, path string, versions ...int64) ([]int64, error) {
	return c.versionsCall(ctx, "destroy", path, func(ctx context.Context) ([]int64, error) {
		resp, err := c.unary.DestroySecret(ctx, connect.NewRequest(&nexusv1.DestroySecretRequest{Path: path, Versions: versions}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetVersions(), nil
	})
}

func (c *Client) versionsCall(ctx context.Context, op, path string, call func(context.Context) ([]int64, error)) ([]int64, error) {
	ctx, done, err := c.callCtx(ctx)
	if err != nil {
		return nil, c.wrap(op, path, err)
	}
	defer done()
	v, err := call(ctx)
	if err != nil {
		return nil, c.wrap(op, path, err)
	}
	return v, nil
}

// ListOptions changes a listing.
type ListOptions struct {
	// Recursive lists every secret below the prefix instead of one level
	// (where an entry ending in "/" is a directory).
	Recursive bool
	// PageSize is how many paths each call asks for (0: Nexus's default).
	PageSize int32
}

// List returns the paths under prefix that the caller may list, from all
// pages. It needs list permission; paths the caller may not list are left
// out.
func (c *Client) List(ctx context.Context, prefix string, opts ListOptions) ([]string, error) {
	var paths []string
	for p, err := range c.Paths(ctx, prefix, opts) {
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Paths iterates over the paths under prefix, a page at a time: as List,
// without holding them all. A failure is yielded once, as the last
// element.
func (c *Client) Paths(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		ctx, done, err := c.callCtx(ctx)
		if err != nil {
			yield("", c.wrap("list", prefix, err))
			return
		}
		defer done()
		token := ""
		for {
			resp, err := c.unary.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{
				Prefix: prefix, Recursive: opts.Recursive, PageSize: opts.PageSize, PageToken: token,
			}))
			if err != nil {
				yield("", c.wrap("list", prefix, err))
				return
			}
			for _, p := range resp.Msg.GetPaths() {
				if !yield(p, nil) {
					return
				}
			}
			if token = resp.Msg.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}
