package server

import (
	"context"
	"encoding/base64"
	"strings"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/postgres"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// ListSecrets returns one page of the live secrets under a prefix.
func (s secrets) ListSecrets(ctx context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	prefix, recursive := req.Msg.GetPrefix(), req.Msg.GetRecursive()
	if err := secret.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if !recursive && prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
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
	paths, more, err := s.store.ListSecrets(ctx, postgres.List{Prefix: prefix, Recursive: recursive, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	resp := &nexusv1.ListSecretsResponse{Paths: paths}
	if more {
		resp.NextPageToken = encodePageToken(paths[len(paths)-1])
	}
	return connect.NewResponse(resp), nil
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
