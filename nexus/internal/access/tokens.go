package access

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/nexus/internal/audit"
	"github.com/spike-dev/spike/nexus/internal/envelope"
	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/token"
)

// tokenPrefix marks SPIKE admin tokens, so that a leaked one is easy to
// recognise (and to scan for).
const tokenPrefix = "spike_at_"

// tokenDetails is the sealed content of an admin token row.
type tokenDetails struct {
	Lookup    []byte    `json:"lookup"`
	Admin     string    `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Revoked   bool      `json:"revoked"`
}

// Tokens issues, verifies and revokes admin tokens. A token is 256 random
// bits; the database holds its SHA-256 (for lookup) and its details sealed
// and bound to that hash.
type Tokens struct {
	store      TokenStore
	keys       *envelope.Keys
	defaultTTL time.Duration
	maxTTL     time.Duration
	now        func() time.Time
}

// TokenStore is what Tokens needs of the database. CreateToken and
// RevokeToken commit rec, the audit record of the request, with the change.
type TokenStore interface {
	CreateToken(ctx context.Context, rec *audit.Entry, t token.Record) error
	Token(ctx context.Context, lookup []byte) (token.Record, error)
	RevokeToken(ctx context.Context, rec *audit.Entry, lookup, sealed []byte) error
	// TokensNotSealedUnder returns the tokens sealed under another data
	// key than active.
	TokensNotSealedUnder(ctx context.Context, active []byte) ([]token.Record, error)
	// ResealToken replaces a token's sealed details old with sealed,
	// unless they changed meanwhile (then it does nothing).
	ResealToken(ctx context.Context, lookup, old, sealed []byte) error
}

// NewTokens returns a token service issuing tokens valid for defaultTTL
// unless a shorter or longer one (up to maxTTL) is asked for.
func NewTokens(store TokenStore, keys *envelope.Keys, defaultTTL, maxTTL time.Duration) *Tokens {
	return &Tokens{store: store, keys: keys, defaultTTL: defaultTTL, maxTTL: maxTTL, now: time.Now}
}

const reLogin = "run `spike login`"

// Issue creates a token for admin, valid for ttl (0: the default), and
// stores it with rec, the audit record of the request.
func (t *Tokens) Issue(ctx context.Context, rec *audit.Entry, admin spiffeid.ID, ttl time.Duration) (string, time.Time, error) {
	switch {
	case ttl == 0:
		ttl = t.defaultTTL
	case ttl < time.Second || ttl > t.maxTTL:
		return "", time.Time{}, fault.New(fault.Invalid, "token lifetime %s is out of range: at least 1s and at most %s (ttl_seconds %d to %d; 0 for the default, %s)",
			ttl, t.maxTTL, 1, int64(t.maxTTL.Seconds()), t.defaultTTL)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("generate token: %w", err)
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	lookup := token.Lookup(tok)
	// Full precision: truncating now would cut up to a second off the
	// token's life (a 1s token could be born expired).
	now := t.now().UTC().Round(0)
	d := tokenDetails{Lookup: lookup, Admin: admin.String(), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	sealed, err := t.seal(ctx, d)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := t.store.CreateToken(ctx, rec, token.Record{Lookup: lookup, Sealed: sealed, ExpiresAt: d.ExpiresAt}); err != nil {
		return "", time.Time{}, err
	}
	return tok, d.ExpiresAt, nil
}

// Verify checks that token is a valid, unexpired, unrevoked admin token
// issued to caller. Its errors say what is wrong and what to do.
func (t *Tokens) Verify(ctx context.Context, tok string, caller spiffeid.ID) error {
	d, err := t.details(ctx, tok)
	if err != nil {
		return err
	}
	switch {
	case d.Revoked:
		return fault.New(fault.Unauthenticated, "admin token was revoked (logged out): %s", reLogin)
	case !t.now().Before(d.ExpiresAt):
		return fault.New(fault.Unauthenticated, "admin token expired at %s: %s", d.ExpiresAt.Format(time.RFC3339), reLogin)
	case subtle.ConstantTimeCompare([]byte(d.Admin), []byte(caller.String())) != 1:
		return fault.New(fault.Unauthenticated, "admin token was issued to another admin SPIFFE ID: %s", reLogin)
	}
	return nil
}

// Revoke revokes tok, committing rec, the audit record of the request, with
// the revocation. Revoking an expired or revoked token is fine.
func (t *Tokens) Revoke(ctx context.Context, rec *audit.Entry, tok string) error {
	d, err := t.details(ctx, tok)
	if err != nil {
		return err
	}
	d.Revoked = true
	sealed, err := t.seal(ctx, d)
	if err != nil {
		return err
	}
	return t.store.RevokeToken(ctx, rec, d.Lookup, sealed)
}

// details looks token up and opens its sealed details.
func (t *Tokens) details(ctx context.Context, tok string) (tokenDetails, error) {
	if !strings.HasPrefix(tok, tokenPrefix) || len(tok) > 128 {
		return tokenDetails{}, fault.New(fault.Unauthenticated, "admin token is malformed: %s", reLogin)
	}
	lookup := token.Lookup(tok)
	row, err := t.store.Token(ctx, lookup)
	if fault.CodeOf(err) == fault.NotFound {
		return tokenDetails{}, fault.New(fault.Unauthenticated, "admin token is unknown: %s", reLogin)
	}
	if err != nil {
		return tokenDetails{}, err
	}
	plain, err := t.keys.Open(ctx, row.Sealed, envelope.TokenAAD(lookup), "admin token")
	if err != nil {
		return tokenDetails{}, err
	}
	var d tokenDetails
	if err := json.Unmarshal(plain, &d); err != nil || subtle.ConstantTimeCompare(d.Lookup, lookup) != 1 {
		return tokenDetails{}, fault.New(fault.DataLoss, "admin token record failed authentication")
	}
	// The clear copy can only add a revocation, never lift one.
	if row.RevokedAt != nil {
		d.Revoked = true
	}
	return d, nil
}

func (t *Tokens) seal(ctx context.Context, d tokenDetails) ([]byte, error) {
	plain, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode token: %w", err)
	}
	key, err := t.keys.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	return key.Seal(plain, envelope.TokenAAD(d.Lookup))
}

// Reseal seals every admin token's details again under the data key in
// use (spike operator rewrap), so that older data keys can be retired; it
// returns how many it sealed. A token whose details do not authenticate is
// data loss, as when it is used.
func (t *Tokens) Reseal(ctx context.Context) (int, error) {
	key, err := t.keys.ActiveKey(ctx)
	if err != nil {
		return 0, err
	}
	rows, err := t.store.TokensNotSealedUnder(ctx, key.ID[:])
	if err != nil {
		return 0, err
	}
	n := 0
	for _, row := range rows {
		plain, err := t.keys.Open(ctx, row.Sealed, envelope.TokenAAD(row.Lookup), "admin token")
		if err != nil {
			return n, err
		}
		var d tokenDetails
		err = json.Unmarshal(plain, &d)
		if err != nil || subtle.ConstantTimeCompare(d.Lookup, row.Lookup) != 1 {
			clear(plain)
			return n, fault.New(fault.DataLoss, "admin token record failed authentication")
		}
		sealed, err := key.Seal(plain, envelope.TokenAAD(row.Lookup))
		clear(plain)
		if err != nil {
			return n, err
		}
		if err := t.store.ResealToken(ctx, row.Lookup, row.Sealed, sealed); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
