package strength

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/shared/password"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		pw     string
		inputs []string
		ok     bool
		weak   bool // the refusal is ErrWeak
	}{
		{name: "passphrase", pw: "correct horse battery staple", ok: true},
		{name: "four unrelated words", pw: "purple monkey dishwasher lamp", ok: true},
		{name: "exactly NewMinLen", pw: "vq8#Lm2!xR4z", ok: true},
		{name: "longest", pw: "correct horse battery staple " + strings.Repeat("x", password.MaxLen-29), ok: true},
		{name: "non-ASCII", pw: "Grüße aus dem kühlen Norden", ok: true},
		{name: "empty", pw: ""},
		{name: "MinLen is not enough", pw: "vq8#Lm2!"},
		{name: "one short of NewMinLen", pw: "vq8#Lm2!xR4"},
		{name: "too long", pw: "correct horse battery staple " + strings.Repeat("x", password.MaxLen-28)},
		{name: "not UTF-8", pw: "correct horse \xff\xfe battery"},
		{name: "common password doubled", pw: "passwordpassword", weak: true},
		{name: "keyboard row", pw: "qwertyuiopasdf", weak: true},
		{name: "repeated character", pw: strings.Repeat("a", 40), weak: true},
		{name: "sequence", pw: "abcdefghijklmnop", weak: true},
		{name: "product name and digits", pw: "Spike1234567", weak: true},
		{name: "trust domain", pw: "prod.acme.example", inputs: []string{"prod.acme.example"}, weak: true},
		{name: "weak within the estimated prefix", pw: strings.Repeat("a", maxEstimated) + " correct horse battery staple", weak: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check([]byte(tt.pw), tt.inputs...)
			if (err == nil) != tt.ok {
				t.Fatalf("Check = %v, want ok %v", err, tt.ok)
			}
			if tt.weak != errors.Is(err, ErrWeak) {
				t.Errorf("Check = %v, want ErrWeak %v", err, tt.weak)
			}
			if err != nil && tt.pw != "" && strings.Contains(err.Error(), tt.pw) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestCheckWeakSaysWhatToDo(t *testing.T) {
	t.Parallel()
	err := Check([]byte("passwordpassword"))
	want := "is too easy to guess: estimated 7 guesses, want at least 1e+08; add more unrelated words"
	if err == nil || err.Error() != want {
		t.Errorf("Check = %v, want %q", err, want)
	}
}

// TestCheckWithoutInputsPasses shows that the inputs matter: the same
// password passes when nothing ties it to the installation.
func TestCheckWithoutInputsPasses(t *testing.T) {
	t.Parallel()
	pw := []byte("prod.acme.example")
	if err := Check(pw); err != nil {
		t.Fatalf("Check without inputs = %v, want nil", err)
	}
	if err := Check(pw, "prod.acme.example"); !errors.Is(err, ErrWeak) {
		t.Errorf("Check with the trust domain = %v, want ErrWeak", err)
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pw   string
		want int
	}{
		{"short", "abc", 3},
		{"exactly the limit", strings.Repeat("a", maxEstimated), maxEstimated},
		{"cut at the limit", strings.Repeat("a", maxEstimated+5), maxEstimated},
		// "é" is two bytes and would straddle the limit.
		{"not inside a character", strings.Repeat("a", maxEstimated-1) + "é", maxEstimated - 1},
	}
	for _, tt := range tests {
		if got := len(prefix([]byte(tt.pw))); got != tt.want {
			t.Errorf("%s: len(prefix) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestInputs(t *testing.T) {
	t.Parallel()
	got := inputs([]string{"prod.acme-corp.example", "single"})
	want := append(append([]string(nil), products...), "prod.acme-corp.example", "prod", "acme", "corp", "example", "single")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
}
