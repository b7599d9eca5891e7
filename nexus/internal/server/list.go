package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"connectrpc.com/connect"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"

	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/policy"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// maxFilteredScans bounds how many store pages one listing reads to fill
// a page for a workload whose policies hide most entries.
const maxFilteredScans = 10

// Bounds on the work that deciding a workload's directory entries costs.
// A directory entry is shown to a workload only when the directory holds at
// least one live secret the workload may list; finding one means reading
// the secrets below the directory, in pages of growing size, until one is
// visible. So that this stays bounded whatever the store holds:
//
//   - maxDirScan: at most this many secrets are read below one directory.
//     A directory whose first maxDirScan secrets are all hidden from the
//     caller is hidden too (and logged at debug level), even if a visible
//     secret lies further down: it fails closed. The caller can still list
//     that directory itself (or recursively) to reach its secrets.
//   - maxDirScanPerRequest: once the directory checks of one request have
//     read this many secrets, the page ends before the next directory that
//     needs a check, and its token leads on from there, as when
//     maxFilteredScans is reached. The first entry of a request is always
//     decided, so every page makes progress; one request thus reads at most
//     maxDirScanPerRequest+maxDirScan secrets for directory checks.
const (
	maxDirScan           = 5000
	maxDirScanPerRequest = 20000
	firstDirScanPage     = 64
	maxDirScanPage       = 1000
)

// ListSecrets returns one page of the live secrets under a prefix. A
// workload sees only the entries its policies let it list; a page may then
// hold fewer entries than asked for, and the token still leads on.
func (s secretServer) ListSecrets(ctx context.Context, req *connect.Request[nexusv1.ListSecretsRequest]) (*connect.Response[nexusv1.ListSecretsResponse], error) {
	return unary(ctx, s.Server, req, s.listSecrets)
}

func (s secretServer) listSecrets(ctx context.Context, c *call, m *nexusv1.ListSecretsRequest) (*nexusv1.ListSecretsResponse, error) {
	prefix, recursive := m.GetPrefix(), m.GetRecursive()
	if err := secret.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	prefix = listPrefix(prefix, recursive)
	limit, err := secret.PageSize(m.GetPageSize())
	if err != nil {
		return nil, err
	}
	sealedToken, err := parsePageToken(m.GetPageToken())
	if err != nil {
		return nil, err
	}
	if err := s.keeper.Ready(ctx); err != nil {
		return nil, err
	}

	after, err := s.openPageToken(ctx, sealedToken, c, prefix, recursive)
	if err != nil {
		return nil, err
	}
	f := s.filterFor(c)
	var paths []string
	more := true
	decided := false
scan:
	for scans := 0; more && len(paths) < limit && scans < maxFilteredScans; scans++ {
		var page []string
		page, more, err = s.store.ListSecrets(ctx, secret.Listing{Prefix: prefix, Recursive: recursive, IncludeDeleted: m.GetIncludeDeleted(), After: after, Limit: limit - len(paths)})
		if err != nil {
			return nil, err
		}
		for _, entry := range page {
			show, ok, err := f.visible(ctx, entry, decided)
			if err != nil {
				return nil, err
			}
			if !ok {
				// The request's scan budget is spent: stop before entry.
				more = true
				break scan
			}
			if show {
				paths = append(paths, entry)
			}
			after, decided = entry, true
		}
	}
	resp := &nexusv1.ListSecretsResponse{Paths: paths}
	if m.GetIncludeDeleted() {
		deleted, err := s.store.Deleted(ctx, paths)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			if deleted[p] {
				resp.Deleted = append(resp.Deleted, p)
			}
		}
	}
	if more {
		if resp.NextPageToken, err = s.sealPageToken(ctx, c, prefix, recursive, after); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// listFilter decides which listing entries a caller sees: all for an
// admin; for a workload, the secrets it may list and the directories that
// hold at least one of them.
type listFilter struct {
	s   secretServer
	c   *call
	set *policy.Set
	// scanned counts the secrets the directory checks of this request read.
	scanned int
}

func (s secretServer) filterFor(c *call) *listFilter {
	f := &listFilter{s: s, c: c}
	if !c.admin {
		f.set = s.policies.Set()
	}
	return f
}

// visible reports whether entry is shown. When mayDefer is true and the
// request's scan budget is spent, an entry that needs a directory check is
// left undecided (ok false).
func (f *listFilter) visible(ctx context.Context, entry string, mayDefer bool) (show, ok bool, err error) {
	if f.c.admin {
		return true, true, nil
	}
	if !strings.HasSuffix(entry, "/") {
		return f.set.Allowed(f.c.caller, entry).Has(policy.List), true, nil
	}
	// MayList is a cheap first filter: no policy could grant list on
	// anything under entry, so nothing under it is visible.
	if !f.set.MayList(f.c.caller, entry) {
		return false, true, nil
	}
	if mayDefer && f.scanned >= maxDirScanPerRequest {
		return false, false, nil
	}
	show, err = f.holdsVisible(ctx, entry)
	return show, err == nil, err
}

// holdsVisible reports whether the directory dir holds a live secret the
// workload may list, reading at most maxDirScan secrets below it.
func (f *listFilter) holdsVisible(ctx context.Context, dir string) (bool, error) {
	after, size := "", firstDirScanPage
	for read := 0; read < maxDirScan; {
		page, more, err := f.s.store.ListSecrets(ctx, secret.Listing{Prefix: dir, Recursive: true, After: after, Limit: min(size, maxDirScan-read)})
		if err != nil {
			return false, err
		}
		read += len(page)
		f.scanned += len(page)
		for _, path := range page {
			if f.set.Allowed(f.c.caller, path).Has(policy.List) {
				return true, nil
			}
		}
		if !more || len(page) == 0 {
			return false, nil
		}
		after, size = page[len(page)-1], min(2*size, maxDirScanPage)
	}
	f.s.log.Debug("listing hides a directory: no secret the caller may list among the first ones below it",
		"caller", f.c.caller.String(), "directory", dir, "scanned", maxDirScan)
	return false, nil
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

// A page token is the last entry the previous page read (shown to the
// caller or not), sealed with a data key like any stored value, base64url
// encoded. Its additional data binds it to the caller's SPIFFE ID, the
// listed prefix and the mode, so a caller cannot read the hidden entry it
// may carry, forge one, or replay another caller's or another listing's.
// Any Nexus replica of the same database opens it: the data keys are
// shared. The sealed cursor is padded to a fixed length so that the token's
// length does not reveal the entry's.
//
// Plaintext layout: 2-byte big-endian length of the entry, the entry, zero
// padding up to pageTokenPlainLen.
const pageTokenPlainLen = 2 + secret.MaxPathLen

// maxPageTokenLen bounds a token before it is decoded: the sealed format
// adds well under 64 bytes to the plaintext.
var maxPageTokenLen = base64.RawURLEncoding.EncodedLen(pageTokenPlainLen + 64)

func errPageToken() error {
	return fault.New(fault.Invalid, "page_token: is not a token from this listing")
}

func (s secretServer) sealPageToken(ctx context.Context, c *call, prefix string, recursive bool, last string) (string, error) {
	key, err := s.keys.ActiveKey(ctx)
	if err != nil {
		return "", err
	}
	plain := make([]byte, pageTokenPlainLen)
	binary.BigEndian.PutUint16(plain, uint16(len(last)))
	copy(plain[2:], last)
	sealed, err := key.Seal(plain, envelope.ListTokenAAD(c.caller.String(), prefix, recursive))
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// parsePageToken decodes a token's base64, a check that needs no key.
func parsePageToken(token string) ([]byte, error) {
	if token == "" {
		return nil, nil
	}
	if len(token) > maxPageTokenLen {
		return nil, errPageToken()
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, errPageToken()
	}
	return b, nil
}

// openPageToken returns the cursor a sealed token carries ("" for none).
// A token that does not open for this caller and listing is refused as
// invalid; a dependency failure (database, Keeper) stays what it is.
func (s secretServer) openPageToken(ctx context.Context, sealed []byte, c *call, prefix string, recursive bool) (string, error) {
	if sealed == nil {
		return "", nil
	}
	plain, err := s.keys.Open(ctx, sealed, envelope.ListTokenAAD(c.caller.String(), prefix, recursive), "page token")
	if err != nil {
		if fault.CodeOf(err) == fault.DataLoss {
			// Forged, altered or another listing's token: the caller's
			// mistake, not stored data gone bad. Not logged above debug
			// so a caller cannot flood the log.
			s.log.Debug("page token refused", "caller", c.caller.String(), "error", err.Error())
			return "", errPageToken()
		}
		return "", err
	}
	if len(plain) != pageTokenPlainLen {
		return "", errPageToken()
	}
	n := int(binary.BigEndian.Uint16(plain))
	if n > secret.MaxPathLen {
		return "", errPageToken()
	}
	last := string(plain[2 : 2+n])
	// Sealed by Nexus, so these hold; checked anyway.
	if !strings.HasPrefix(last, prefix) || secret.ValidatePrefix(last) != nil {
		return "", errPageToken()
	}
	return last, nil
}
