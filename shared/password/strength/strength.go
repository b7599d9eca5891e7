// Package strength decides whether a new admin password is strong enough,
// with zxcvbn's estimate of the guesses an attacker needs. It is apart from
// package password because the estimator builds its dictionaries (about
// 10 MB) when the program starts: only programs that set passwords import
// it.
package strength

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"

	"github.com/spike-dev/spike/shared/password"
)

// MinScore is the lowest zxcvbn score accepted for a new password: 3, at
// least 10^8 guesses, zxcvbn's "safely unguessable" against an offline
// attack on a slow hash such as Argon2id.
const MinScore = 3

// minGuesses is the estimate that MinScore stands for, for the message.
const minGuesses = 1e8

// maxEstimated is how much of a password is estimated, in bytes. zxcvbn's
// cost grows steeply with length (seconds for a kilobyte); its authors
// advise estimating the first 100 characters. A longer password must be
// strong within them.
const maxEstimated = 100

// products are the words every estimate penalises: guessing them is free.
var products = []string{"spike", "spiffe", "keeper", "nexus", "pilot", "admin"}

// ErrWeak is in the chain of the error Check returns when the password is
// too easy to guess.
var ErrWeak = errors.New("too easy to guess")

// Check reports whether pw may become an admin password: NewMinLen to
// MaxLen bytes of UTF-8 text that zxcvbn scores at least MinScore. Words
// an attacker would try first are penalised: SPIKE's own names and
// userInputs (such as the trust domain, which is also split into its
// labels). The error says what to do and reveals nothing of the password,
// not even its length.
func Check(pw []byte, userInputs ...string) error {
	switch {
	case len(pw) < password.NewMinLen || len(pw) > password.MaxLen:
		return fmt.Errorf("must be %d to %d bytes long", password.NewMinLen, password.MaxLen)
	case !utf8.Valid(pw):
		return errors.New("must be UTF-8 text")
	}
	r := zxcvbn.PasswordStrength(string(prefix(pw)), inputs(userInputs))
	if r.Score < MinScore {
		return fmt.Errorf("is %w: estimated %.2g guesses, want at least %.0g; add more unrelated words", ErrWeak, r.Guesses, minGuesses)
	}
	return nil
}

// prefix returns the first maxEstimated bytes of pw, or fewer so as not
// to cut a character in two.
func prefix(pw []byte) []byte {
	if len(pw) <= maxEstimated {
		return pw
	}
	n := maxEstimated
	for n > 0 && !utf8.RuneStart(pw[n]) {
		n--
	}
	return pw[:n]
}

// inputs returns the words to penalise: products, each user input and its
// parts ("spiffe.example.org" gives "spiffe", "example" and "org" too).
func inputs(userInputs []string) []string {
	words := append([]string(nil), products...)
	for _, in := range userInputs {
		words = append(words, in)
		parts := strings.FieldsFunc(in, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		if len(parts) > 1 {
			words = append(words, parts...)
		}
	}
	return words
}
