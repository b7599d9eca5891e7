package cli

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

// fakeNexus is an in-process Nexus over plain HTTP. It records each
// request and the Authorization header it came with, keeps the data of
// puts and patches (of secrets and policies) in memory so that a later get
// returns it, lists a fixed tree of paths a page at a time, and answers
// every request with err when set.
type fakeNexus struct {
	// Rotation is tried end to end (e2e/rotate_test.go), not against this
	// fake.
	nexusv1connect.UnimplementedOperatorServiceHandler
	// WatchSecrets answers Unimplemented: the agent falls back to polling.
	nexusv1connect.UnimplementedSecretServiceHandler
	err error
	// pageSize is how many entries one ListSecrets page holds, whatever the
	// request asks; 0 means all.
	pageSize int
	// paths is the tree that ListSecrets lists; nil means fakePaths.
	paths []string
	// invalid is what ListPolicies reports as invalid_policies.
	invalid []string
	// audit is the audit trail, newest first; nil means demoAuditRecords.
	audit []*nexusv1.AuditRecord
	// auditPageSize caps the records of one ListAuditRecords page, as
	// Nexus caps page_size; 0 means no cap.
	auditPageSize int
	// auditNextToken, when set, is the next_page_token of every page.
	auditNextToken string
	// verify is the answer of VerifyAuditTrail; nil means a trail that
	// verifies.
	verify *nexusv1.VerifyAuditTrailResponse

	mu       sync.Mutex
	requests []proto.Message
	auth     []string // the Authorization header of each request, "" when absent
	stored   map[string]*nexusv1.Secret
	policies map[string]*nexusv1.Policy
}

// errBadToken answers a page token that the fake did not hand out.
var errBadToken = errors.New("bad page token")

// fakePaths is the default tree of secrets.
var fakePaths = []string{
	"apps/demo/api",
	"apps/demo/db",
	"apps/readme",
	"apps/web/frontend/tls",
	"apps/web/token",
	"top",
}

func (f *fakeNexus) record(m proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, m)
	return f.err
}

func (f *fakeNexus) received() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// authorizations returns the Authorization header of each request so far.
func (f *fakeNexus) authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth
}

// recordAuth is a handler interceptor that records the Authorization
// header of every request.
func (f *fakeNexus) recordAuth(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		f.mu.Lock()
		f.auth = append(f.auth, req.Header().Get("Authorization"))
		f.mu.Unlock()
		return next(ctx, req)
	}
}

// latest returns the stored secret at path, or demoSecret for a path never
// written.
func (f *fakeNexus) latest(path string) *nexusv1.Secret {
	if s, ok := f.stored[path]; ok {
		return proto.CloneOf(s)
	}
	s := demoSecret()
	s.Path = path
	return s
}

// write stores data as version previous+1 of path and returns it.
func (f *fakeNexus) write(path string, previous int64, data map[string]string) *nexusv1.Secret {
	version := previous + 1
	if f.stored == nil {
		f.stored = make(map[string]*nexusv1.Secret)
	}
	s := &nexusv1.Secret{Path: path, Version: version, Data: maps.Clone(data), CreatedAt: created, CreatedBy: "spiffe://spike.local/spike/pilot"}
	f.stored[path] = s
	return s
}

func (f *fakeNexus) Init(_ context.Context, req *connect.Request[nexusv1.InitRequest]) (*connect.Response[nexusv1.InitResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	resp := &nexusv1.InitResponse{KeyringId: "ab12", Token: &nexusv1.AdminToken{Token: initToken, ExpiresAt: expires(0)}}
	for i := range req.Msg.GetShareCount() {
		resp.Shares = append(resp.Shares, []byte(fakeShare(int(i)+1, int(req.Msg.GetShareCount()), int(req.Msg.GetShareThreshold()))))
	}
	return connect.NewResponse(resp), nil
}

// Tokens that the fake hands out.
const (
	initToken  = "spk_init.Zm9vYmFy"
	loginToken = "spk_login.YmF6cXV4"
)

// expires is when a token with a TTL of ttlSeconds (0: the default 8h)
// handed out by the fake expires.
func expires(ttlSeconds int64) *timestamppb.Timestamp {
	ttl := 8 * time.Hour
	if ttlSeconds > 0 {
		ttl = time.Duration(ttlSeconds) * time.Second
	}
	return timestamppb.New(created.AsTime().Add(ttl))
}

func (f *fakeNexus) Login(_ context.Context, req *connect.Request[nexusv1.LoginRequest]) (*connect.Response[nexusv1.LoginResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.LoginResponse{Token: &nexusv1.AdminToken{Token: loginToken, ExpiresAt: expires(req.Msg.GetTtlSeconds())}}), nil
}

func (f *fakeNexus) Logout(_ context.Context, req *connect.Request[nexusv1.LogoutRequest]) (*connect.Response[nexusv1.LogoutResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.LogoutResponse{}), nil
}

func (f *fakeNexus) Unseal(_ context.Context, req *connect.Request[nexusv1.UnsealRequest]) (*connect.Response[nexusv1.UnsealResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.UnsealResponse{KeyringId: "ab12"}), nil
}

func (f *fakeNexus) Rekey(_ context.Context, req *connect.Request[nexusv1.RekeyRequest]) (*connect.Response[nexusv1.RekeyResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	resp := &nexusv1.RekeyResponse{KeyringId: "ab12", Epoch: 2, Token: &nexusv1.AdminToken{Token: loginToken, ExpiresAt: expires(0)}}
	for i := range req.Msg.GetNewShareCount() {
		resp.Shares = append(resp.Shares, []byte(fakeShare(int(i)+1, int(req.Msg.GetNewShareCount()), int(req.Msg.GetNewShareThreshold()))))
	}
	return connect.NewResponse(resp), nil
}

// fakeShare is the text form of share i of n (threshold k) that the fake
// hands out; its payload is made up.
func fakeShare(i, n, k int) string {
	return "spike-share-v1:ab12cd34:" + strconv.Itoa(i) + "-of-" + strconv.Itoa(n) + ":k" + strconv.Itoa(k) + ":PAYLOAD" + strconv.Itoa(i)
}

func (f *fakeNexus) Status(_ context.Context, req *connect.Request[nexusv1.StatusRequest]) (*connect.Response[nexusv1.StatusResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.StatusResponse{
		Initialized: true, SchemaVersion: 1, KeeperReachable: true, KeyringId: "ab12", NexusVersion: "dev",
	}), nil
}

func (f *fakeNexus) Seal(_ context.Context, req *connect.Request[nexusv1.SealRequest]) (*connect.Response[nexusv1.SealResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.SealResponse{Keepers: []*nexusv1.KeeperStatus{
		{Url: "https://k1:8443", Reachable: true, SealedOnPurpose: true, SealConfirmed: true},
	}}), nil
}

func (f *fakeNexus) PutSecret(_ context.Context, req *connect.Request[nexusv1.PutSecretRequest]) (*connect.Response[nexusv1.PutSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.write(req.Msg.GetPath(), f.stored[req.Msg.GetPath()].GetVersion(), req.Msg.GetData())
	return connect.NewResponse(&nexusv1.PutSecretResponse{Path: s.GetPath(), Version: s.GetVersion(), CreatedAt: created}), nil
}

func (f *fakeNexus) PatchSecret(_ context.Context, req *connect.Request[nexusv1.PatchSecretRequest]) (*connect.Response[nexusv1.PatchSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	latest := f.latest(req.Msg.GetPath())
	data := latest.GetData()
	maps.Copy(data, req.Msg.GetData())
	s := f.write(req.Msg.GetPath(), latest.GetVersion(), data)
	return connect.NewResponse(&nexusv1.PatchSecretResponse{Path: s.GetPath(), Version: s.GetVersion(), CreatedAt: created}), nil
}

func (f *fakeNexus) RollbackSecret(_ context.Context, req *connect.Request[nexusv1.RollbackSecretRequest]) (*connect.Response[nexusv1.RollbackSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.RollbackSecretResponse{Path: req.Msg.GetPath(), Version: 7, CreatedAt: created}), nil
}

func (f *fakeNexus) GetSecret(_ context.Context, req *connect.Request[nexusv1.GetSecretRequest]) (*connect.Response[nexusv1.GetSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.latest(req.Msg.GetPath())
	if v := req.Msg.GetVersion(); v != 0 {
		s.Version = v
	}
	return connect.NewResponse(&nexusv1.GetSecretResponse{Secret: s}), nil
}

// ListSecrets lists the fake tree like Nexus: one directory level (with
// "/"-terminated subdirectories) or recursively, pageSize entries at a
// time, the page token being the index of the next entry.
func (f *fakeNexus) ListSecrets(_ context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	paths := f.paths
	if paths == nil {
		paths = fakePaths
	}
	prefix := req.Msg.GetPrefix()
	if !req.Msg.GetRecursive() && prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var entries []string
	for _, p := range slices.Sorted(slices.Values(paths)) {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 && !req.Msg.GetRecursive() {
			p = prefix + rest[:i+1]
		}
		if !slices.Contains(entries, p) {
			entries = append(entries, p)
		}
	}
	start := 0
	if t := req.Msg.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n > len(entries) {
			return nil, connect.NewError(connect.CodeInvalidArgument, errBadToken)
		}
		start = n
	}
	end := len(entries)
	if f.pageSize > 0 && start+f.pageSize < end {
		end = start + f.pageSize
	}
	resp := &nexusv1.ListSecretsResponse{Paths: entries[start:end]}
	if end < len(entries) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeNexus) DeleteSecret(_ context.Context, req *connect.Request[nexusv1.DeleteSecretRequest]) (*connect.Response[nexusv1.DeleteSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DeleteSecretResponse{Versions: versionsOrLatest(req.Msg.GetVersions())}), nil
}

func (f *fakeNexus) UndeleteSecret(_ context.Context, req *connect.Request[nexusv1.UndeleteSecretRequest]) (*connect.Response[nexusv1.UndeleteSecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.UndeleteSecretResponse{Versions: versionsOrLatest(req.Msg.GetVersions())}), nil
}

func (f *fakeNexus) DestroySecret(_ context.Context, req *connect.Request[nexusv1.DestroySecretRequest]) (*connect.Response[nexusv1.DestroySecretResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DestroySecretResponse{Versions: versionsOrLatest(req.Msg.GetVersions())}), nil
}

func (f *fakeNexus) GetSecretMetadata(_ context.Context, req *connect.Request[nexusv1.GetSecretMetadataRequest]) (*connect.Response[nexusv1.GetSecretMetadataResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	m := demoMetadata()
	m.Path = req.Msg.GetPath()
	return connect.NewResponse(&nexusv1.GetSecretMetadataResponse{Metadata: m}), nil
}

func (f *fakeNexus) UpdateSecretMetadata(_ context.Context, req *connect.Request[nexusv1.UpdateSecretMetadataRequest]) (*connect.Response[nexusv1.UpdateSecretMetadataResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	m := demoMetadata()
	m.Path = req.Msg.GetPath()
	if req.Msg.MaxVersions != nil {
		m.MaxVersions = req.Msg.GetMaxVersions()
		if m.MaxVersions != 0 {
			m.EffectiveMaxVersions = m.MaxVersions
		}
	}
	if req.Msg.CasRequired != nil {
		m.CasRequired = req.Msg.GetCasRequired()
	}
	if c := req.Msg.GetCustomMetadata(); c != nil {
		m.CustomMetadata = c.GetEntries()
	}
	return connect.NewResponse(&nexusv1.UpdateSecretMetadataResponse{Metadata: m}), nil
}

func (f *fakeNexus) DeleteSecretMetadata(_ context.Context, req *connect.Request[nexusv1.DeleteSecretMetadataRequest]) (*connect.Response[nexusv1.DeleteSecretMetadataResponse], error) {
	if err := f.record(req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&nexusv1.DeleteSecretMetadataResponse{}), nil
}

// versionsOrLatest is what the fake changed: the given versions, or the
// latest (3).
func versionsOrLatest(versions []int64) []int64 {
	if len(versions) == 0 {
		return []int64{3}
	}
	return versions
}

// serve starts f on an httptest server (plain HTTP) that is closed when the
// test ends, and returns its URL.
func (f *fakeNexus) serve(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	opts := connect.WithInterceptors(connect.UnaryInterceptorFunc(f.recordAuth))
	mux.Handle(nexusv1connect.NewOperatorServiceHandler(f, opts))
	mux.Handle(nexusv1connect.NewSecretServiceHandler(f, opts))
	mux.Handle(nexusv1connect.NewPolicyServiceHandler(f, opts))
	mux.Handle(nexusv1connect.NewAuditServiceHandler(f, opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// plainNexus returns clients for the Nexus at url over plain HTTP.
func plainNexus(url string, opts ...connect.ClientOption) *nexus {
	return newNexus(http.DefaultClient, url, func() error { return nil }, opts...)
}

// dialPlain is a Program.dial that connects to the Nexus at url over plain
// HTTP.
func dialPlain(url string) func(context.Context, ...connect.ClientOption) (*nexus, error) {
	return func(_ context.Context, opts ...connect.ClientOption) (*nexus, error) {
		return plainNexus(url, opts...), nil
	}
}
