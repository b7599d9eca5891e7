package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/proto/spike/nexus/v1/nexusv1connect"
)

type lister interface {
	ListSecrets(context.Context, *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error)
}

// listPages follows a listing to its end and returns every entry and every
// next_page_token it was given.
func listPages(t *testing.T, c lister, prefix string, recursive bool, size int32) (paths, tokens []string) {
	t.Helper()
	token := ""
	for pages := 0; ; pages++ {
		resp, err := c.ListSecrets(t.Context(), connect.NewRequest(&nexusv1.ListSecretsRequest{
			Prefix: prefix, Recursive: recursive, PageSize: size, PageToken: token,
		}))
		if err != nil {
			t.Fatalf("list %q recursive=%v page %d: %v", prefix, recursive, pages, err)
		}
		paths = append(paths, resp.Msg.GetPaths()...)
		token = resp.Msg.GetNextPageToken()
		if token == "" {
			return paths, tokens
		}
		tokens = append(tokens, token)
		if pages > 1000 {
			t.Fatalf("list %q: the listing does not end", prefix)
		}
	}
}

// replica starts a second Nexus on the stack's database and Keeper, with
// its own (empty) key and policy caches, as another replica would be, and
// returns its URL.
func (s *stack) replica() string {
	s.t.Helper()
	return "https://" + s.startNexus(s.nexusDSN, quietLog()).Addr()
}

// Page tokens are sealed: a workload's token reveals none of the entries
// its policies hide, a made-up or altered token is refused, and a token
// works only for the caller and the listing it came from.
func TestListPageTokensAreOpaqueAndBound(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	var all []string
	for i := range 10 {
		all = append(all, fmt.Sprintf("apps/hidden%02d/x", i))
	}
	all = append(all, "apps/web/cache/redis", "apps/web/db", "apps/zz/y")
	for _, p := range all {
		s.put(p, map[string]string{"k": "v"})
	}
	s.putPolicy("web", "spiffe://spike.local/app/web", "apps/web/**", "read", "list")
	s.putPolicy("ops", "spiffe://spike.local/ops", "apps/**", "list")
	webID := spiffeid.RequireFromPath(td, "/app/web")
	web := s.secrets(webID)
	ops := s.secrets(spiffeid.RequireFromPath(td, "/ops"))
	ctx := t.Context()

	// The first page of a workload's recursive listing reads ten hidden
	// entries and shows none; its token must not reveal where it stopped.
	first, err := web.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "apps/", Recursive: true, PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Msg.GetPaths()) != 0 || first.Msg.GetNextPageToken() == "" {
		t.Fatalf("first page = %v, token %q; want no entry and a token", first.Msg.GetPaths(), first.Msg.GetNextPageToken())
	}
	got, tokens := listPages(t, web, "apps/", true, 1)
	if diff := cmp.Diff([]string{"apps/web/cache/redis", "apps/web/db"}, got); diff != "" {
		t.Errorf("workload listing (-want +got):\n%s", diff)
	}
	tokens = append(tokens, first.Msg.GetNextPageToken())
	for _, tok := range tokens {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatalf("token %q is not base64url: %v", tok, err)
		}
		for _, hidden := range []string{"hidden", "apps/zz", "zz/y", "apps/"} {
			if bytes.Contains(raw, []byte(hidden)) || bytes.Contains([]byte(tok), []byte(hidden)) {
				t.Errorf("token %q reveals %q", tok, hidden)
			}
		}
	}
	// Tokens do not reveal the length of the entry they carry either.
	for _, tok := range tokens {
		if len(tok) != len(tokens[0]) {
			t.Errorf("token lengths differ: %d and %d", len(tok), len(tokens[0]))
		}
	}

	list := func(c lister, prefix string, recursive bool, token string) error {
		_, err := c.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{
			Prefix: prefix, Recursive: recursive, PageSize: 1, PageToken: token,
		}))
		return err
	}
	const refused = "page_token: is not a token from this listing"
	// Hand-made tokens: base64 of a path, in both alphabets and paddings.
	for _, forged := range []string{
		base64.RawURLEncoding.EncodeToString([]byte("apps/hidden05/x")),
		base64.StdEncoding.EncodeToString([]byte("apps/hidden05/x")),
		base64.RawURLEncoding.EncodeToString([]byte("apps/web/cache/redis")),
		"!!not-base64",
		base64.RawURLEncoding.EncodeToString(make([]byte, 4096)),
	} {
		wantCode(t, list(web, "apps/", true, forged), connect.CodeInvalidArgument, refused)
	}
	// A real token with one bit flipped, or cut short.
	tok := first.Msg.GetNextPageToken()
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for _, i := range []int{0, 1, 20, len(raw) / 2, len(raw) - 1} {
		flipped := bytes.Clone(raw)
		flipped[i] ^= 1
		wantCode(t, list(web, "apps/", true, base64.RawURLEncoding.EncodeToString(flipped)), connect.CodeInvalidArgument, refused)
	}
	wantCode(t, list(web, "apps/", true, base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1])), connect.CodeInvalidArgument, refused)

	// The token works for its own listing...
	if err := list(web, "apps/", true, tok); err != nil {
		t.Fatalf("own token refused: %v", err)
	}
	// ...and not for another caller, another prefix or another mode.
	wantCode(t, list(ops, "apps/", true, tok), connect.CodeInvalidArgument, refused)
	wantCode(t, list(s.secrets(adminID), "apps/", true, tok), connect.CodeInvalidArgument, refused)
	wantCode(t, list(web, "apps/web/", true, tok), connect.CodeInvalidArgument, refused)
	wantCode(t, list(web, "apps/", false, tok), connect.CodeInvalidArgument, refused)
	wantCode(t, list(web, "apps", false, tok), connect.CodeInvalidArgument, refused)
	// An admin's token does not serve a workload either.
	adminFirst, err := s.secrets(adminID).ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{Prefix: "apps/", Recursive: true, PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, list(ops, "apps/", true, adminFirst.Msg.GetNextPageToken()), connect.CodeInvalidArgument, refused)

	// Admins page through everything, each entry exactly once, in both
	// modes and whatever the page size.
	for _, size := range []int32{1, 2, 3, 5, 100} {
		got, _ := listPages(t, s.secrets(adminID), "apps/", true, size)
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("admin recursive listing, page size %d (-want +got):\n%s", size, diff)
		}
		got, _ = listPages(t, s.secrets(adminID), "apps", false, size)
		wantDirs := []string{"apps/hidden00/", "apps/hidden01/", "apps/hidden02/", "apps/hidden03/", "apps/hidden04/",
			"apps/hidden05/", "apps/hidden06/", "apps/hidden07/", "apps/hidden08/", "apps/hidden09/", "apps/web/", "apps/zz/"}
		if diff := cmp.Diff(wantDirs, got); diff != "" {
			t.Errorf("admin directory listing, page size %d (-want +got):\n%s", size, diff)
		}
	}

	// A token opens on another replica of the same database: the data keys
	// are shared, and that replica has none of them cached.
	other := s.replica()
	adminThere := nexusv1connect.NewSecretServiceClient(s.httpClient(adminID), other, withToken(s.token))
	page, err := adminThere.ListSecrets(ctx, connect.NewRequest(&nexusv1.ListSecretsRequest{
		Prefix: "apps/", Recursive: true, PageSize: 1, PageToken: adminFirst.Msg.GetNextPageToken(),
	}))
	if err != nil {
		t.Fatalf("admin token on another replica: %v", err)
	}
	if diff := cmp.Diff(all[1:2], page.Msg.GetPaths()); diff != "" {
		t.Errorf("second admin page on another replica (-want +got):\n%s", diff)
	}
	webThere := nexusv1connect.NewSecretServiceClient(s.httpClient(webID), other)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The replica may not have loaded the policies yet.
		err := list(webThere, "apps/", true, tok)
		if err == nil {
			break
		}
		if connect.CodeOf(err) != connect.CodePermissionDenied || time.Now().After(deadline) {
			t.Fatalf("workload token on another replica: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With a policy that grants list on apps/*/db, the directory listing of
// apps/ shows only the directories holding a live db secret: MayList
// would show every directory, since the pattern could match under each.
func TestListHidesDirectoriesWithNothingVisible(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	for _, p := range []string{
		"apps/web/db", "apps/web/other",
		"apps/pay/db",
		"apps/payroll/other", // only a non-matching secret
		"apps/deep/x/db",     // too deep for apps/*/db
		"apps/mixed/a", "apps/mixed/db", "apps/mixed/z",
		"apps/gone/db", "apps/gone/x", // db deleted below: not live
		"apps/top",
		"other/db",
	} {
		s.put(p, map[string]string{"k": "v"})
	}
	if _, err := s.secrets(adminID).DeleteSecret(t.Context(), connect.NewRequest(&nexusv1.DeleteSecretRequest{Path: "apps/gone/db"})); err != nil {
		t.Fatal(err)
	}
	s.putPolicy("batch", "spiffe://spike.local/batch/a", "apps/*/db", "read", "list")
	batch := s.secrets(spiffeid.RequireFromPath(td, "/batch/a"))

	want := []string{"apps/mixed/", "apps/pay/", "apps/web/"}
	for _, size := range []int32{1, 2, 100} {
		got, _ := listPages(t, batch, "apps/", false, size)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("directory listing of apps/, page size %d (-want +got):\n%s", size, diff)
		}
	}
	for _, tt := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"", false, []string{"apps/"}},
		{"apps/web/", false, []string{"apps/web/db"}},
		{"apps/payroll/", false, nil},
		{"apps/deep/", false, nil},
		{"apps/", true, []string{"apps/mixed/db", "apps/pay/db", "apps/web/db"}},
	} {
		got, _ := listPages(t, batch, tt.prefix, tt.recursive, 100)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("list %q recursive=%v (-want +got):\n%s", tt.prefix, tt.recursive, diff)
		}
	}

	// Admins still see every directory.
	got, _ := listPages(t, s.secrets(adminID), "apps/", false, 100)
	adminWant := []string{"apps/deep/", "apps/gone/", "apps/mixed/", "apps/pay/", "apps/payroll/", "apps/top", "apps/web/"}
	if diff := cmp.Diff(adminWant, got); diff != "" {
		t.Errorf("admin directory listing of apps/ (-want +got):\n%s", diff)
	}
}

// The search for a visible secret below a directory is bounded: a
// directory whose visible secret lies beyond the first 5000 is hidden
// (fail closed), and can still be listed itself.
func TestListDirectoryCheckIsBounded(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.init()
	s.put("apps/big/db", map[string]string{"k": "v"})
	s.put("apps/small/db", map[string]string{"k": "v"})
	// 5000 hidden secrets sorting before apps/big/db, written straight to
	// the database: listing reads no values, so they share one sealed value.
	ctx := t.Context()
	db := s.db()
	for _, sql := range []string{
		`INSERT INTO secrets (path, current_version, oldest_version)
		 SELECT 'apps/big/a' || lpad(i::text, 5, '0'), 1, 1 FROM generate_series(1, 5000) i`,
		`INSERT INTO secret_versions (path, version, dek_id, sealed, created_by)
		 SELECT 'apps/big/a' || lpad(i::text, 5, '0'), 1, v.dek_id, v.sealed, v.created_by
		 FROM generate_series(1, 5000) i, secret_versions v WHERE v.path = 'apps/big/db'`,
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	s.putPolicy("batch", "spiffe://spike.local/batch/a", "apps/*/db", "read", "list")
	batch := s.secrets(spiffeid.RequireFromPath(td, "/batch/a"))
	got, _ := listPages(t, batch, "apps/", false, 100)
	if diff := cmp.Diff([]string{"apps/small/"}, got); diff != "" {
		t.Errorf("directory listing of apps/ (-want +got):\n%s", diff)
	}
	got, _ = listPages(t, batch, "apps/big/", false, 100)
	if diff := cmp.Diff([]string{"apps/big/db"}, got); diff != "" {
		t.Errorf("directory listing of apps/big/ (-want +got):\n%s", diff)
	}
}
