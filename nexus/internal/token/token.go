// Package token holds what SPIKE knows of an admin token at rest: the
// stored record, its lookup hash and the name it goes by in logs and audit
// records. The token itself is never stored.
package token

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Record is an admin token as stored: looked up by the SHA-256 of the
// token, its details sealed by Nexus and bound to that hash.
type Record struct {
	Lookup    []byte
	Sealed    []byte
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// Lookup is the hash a token is stored and looked up under.
func Lookup(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// ID names a token in logs and audit records without revealing it:
// "token:" and the first 8 bytes of its lookup hash, in hex.
func ID(token string) string {
	return "token:" + hex.EncodeToString(Lookup(token)[:8])
}
