package secret_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spike-dev/spike/nexus/internal/fault"
	"github.com/spike-dev/spike/nexus/internal/secret"
)

// pathSeeds are good and bad paths the fuzzer starts from.
var pathSeeds = []string{
	"db", "apps/billing/db-password", "A-Z_a-z.0-9/x", "a/.env/v1.2", "a/..b/c...", "...",
	"", ".", "..", "a/../b", "a/..", "a/./b", "a/.", "a//b", "/a", "a/", "/", "a//",
	"a\x00b", "a\nb", "a\x7f", "a b", `a\b`, "a%2e", "caf\u00e9", "\u2215etc", "a\xff",
	strings.Repeat("a", secret.MaxPathLen), strings.Repeat("a", secret.MaxPathLen+1),
	strings.Repeat("a", secret.MaxPathLen-1) + "/", strings.Repeat("ab/", 170) + "ab",
}

// FuzzValidatePath checks ValidatePath against referenceValidPath and that
// every rejection is a fault.Invalid error naming the field.
func FuzzValidatePath(f *testing.F) {
	for _, p := range pathSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := secret.ValidatePath(p)
		if want := referenceValidPath(p); (err == nil) != want {
			t.Fatalf("ValidatePath(%q) = %v, reference says valid = %v", p, err, want)
		}
		checkFieldError(t, err, "path")
	})
}

// FuzzValidatePrefix checks ValidatePrefix against referenceValidPrefix and
// that every rejection is a fault.Invalid error naming the field.
func FuzzValidatePrefix(f *testing.F) {
	for _, p := range pathSeeds {
		f.Add(p)
	}
	f.Add("apps/")
	f.Fuzz(func(t *testing.T, p string) {
		err := secret.ValidatePrefix(p)
		if want := referenceValidPrefix(p); (err == nil) != want {
			t.Fatalf("ValidatePrefix(%q) = %v, reference says valid = %v", p, err, want)
		}
		checkFieldError(t, err, "prefix")
	})
}

// checkFieldError fails unless err is nil or a *fault.Error with code
// fault.Invalid whose message starts with "field: ".
func checkFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		return
	}
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %q is a %T, want *fault.Error", err, err)
	}
	if fe.Code != fault.Invalid {
		t.Fatalf("error %q has code %v, want fault.Invalid", err, fe.Code)
	}
	if !strings.HasPrefix(err.Error(), field+": ") {
		t.Fatalf("error %q does not start with %q", err, field+": ")
	}
}

// referenceValidPath is the documented path grammar written as plainly as
// possible: 1 to MaxPathLen bytes; segments separated by '/'; every segment
// non-empty, not "." or "..", and made only of ASCII letters, digits, '.',
// '_' and '-'. A leading or trailing '/' makes an empty first or last segment.
func referenceValidPath(p string) bool {
	if len(p) < 1 || len(p) > secret.MaxPathLen {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			seg := p[start:i]
			if seg == "" || seg == "." || seg == ".." {
				return false
			}
			start = i + 1
			continue
		}
		c := p[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// referenceValidPrefix is the documented prefix grammar: empty, or at most
// MaxPathLen bytes that form a valid path once one trailing '/' is removed.
func referenceValidPrefix(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > secret.MaxPathLen {
		return false
	}
	return referenceValidPath(strings.TrimSuffix(p, "/"))
}
