// Package password holds the rules an admin password must follow, in one
// place for the CLI that reads it, Nexus that checks it and Keeper that
// derives a key from it. A new password must also pass the strength
// estimate in package strength; an existing one only CheckLength, so that
// keyrings sealed under the older, shorter minimum still unseal.
package password

import "fmt"

// Length limits, in bytes. The upper bound keeps the key derivation's input
// sane. NewMinLen is the minimum for a password being set (at init or
// rekey); MinLen, for one already in use.
const (
	MinLen    = 8
	NewMinLen = 12
	MaxLen    = 1024
)

// CheckLength reports whether pw is MinLen to MaxLen bytes long. The error
// says what the limits are and reveals nothing of the password, not even
// its length.
func CheckLength(pw []byte) error {
	if len(pw) < MinLen || len(pw) > MaxLen {
		return fmt.Errorf("must be %d to %d bytes long", MinLen, MaxLen)
	}
	return nil
}
