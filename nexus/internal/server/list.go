package server

import (
	"context"
	"encoding/base64"
	"strings"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// maxFilteredScans bounds how many store pages one listing reads to fill
// a page for a workload whose policies hide most entries.
const maxFilteredScans = 10

// ListSecrets returns one page of the live secrets under a prefix. A
// workload sees only the entries its policies let it list; a page may then
// hold fewer entries than asked for, and the token still leads on.
func (s secrets) ListSecrets(ctx context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	prefix, recursive := req.Msg.GetPrefix(), req.Msg.GetRecursive()
	if err := secret.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	prefix = listPrefix(prefix, recursive)
	limit, err := secret.PageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken(req.Msg.GetPageToken(), prefix)
	if err != nil {
		return nil, err
	}
	if err := s.keys.Ready(ctx); err != nil {
		return nil, err
	}
	visible := s.visibleTo(principalFrom(ctx))
	var paths []string
	more := true
	for scans := 0; more && len(paths) < limit && scans < maxFilteredScans; scans++ {
		var page []string
		page, more, err = s.store.ListSecrets(ctx, postgres.List{Prefix: prefix, Recursive: recursive, After: after, Limit: limit - len(paths)})
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			if visible(p) {
				paths = append(paths, p)
			}
		}
		if len(page) > 0 {
			after = page[len(page)-1]
		}
	}
	resp := &nexusv1.ListSecretsResponse{Paths: paths}
	if more {
		resp.NextPageToken = encodePageToken(after)
	}
	return connect.NewResponse(resp), nil
}

// visibleTo returns which listing entries p may see: all for an admin; for
// a workload, the secrets it may list and the directories under which it
// may list something.
func (s secrets) visibleTo(p principal) func(entry string) bool {
	if p.admin {
		return func(string) bool { return true }
	}
	set := s.policies.Set()
	return func(entry string) bool {
		if strings.HasSuffix(entry, "/") {
			return set.MayList(p.id, entry)
		}
		return set.Allowed(p.id, entry).Has(policy.List)
	}
}

// listPrefix is the prefix a listing reads: in directory mode a non-empty
// prefix names a directory.
func listPrefix(prefix string, recursive bool) string {
	if !recursive && prefix != "" && !strings.HasSuffix(prefix, "/") {
		return prefix + "/"
	}
	return prefix
}

// listDir is the directory a list request looks into, for authorization.
func listDir(msg any) string {
	m, ok := msg.(*nexusv1.ListSecretsRequest)
	if !ok {
		return ""
	}
	prefix := listPrefix(m.GetPrefix(), m.GetRecursive())
	return prefix[:strings.LastIndexByte(prefix, '/')+1]
}

// A page token is the last entry of the previous page. It is opaque to
// callers; Nexus checks it names an entry under the listed prefix.
func encodePageToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(last))
}

func decodePageToken(token, prefix string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	last := string(b)
	if err != nil || len(b) > secret.MaxPathLen || !strings.HasPrefix(last, prefix) || secret.ValidatePrefix(last) != nil {
		return "", fault.New(fault.Invalid, "page_token: is not a token from a listing of %q", prefix)
	}
	return last, nil
}
