// Package password holds the rules an admin password must follow, in one
// place for the CLI that reads it, Nexus that checks it and Keeper that
// derives a key from it.
package password

import "fmt"

// Length limits, in bytes. The upper bound keeps the key derivation's input
// sane.
const (
	MinLen = 8
	MaxLen = 1024
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
