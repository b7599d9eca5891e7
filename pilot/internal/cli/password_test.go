package cli

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/spike-dev/spike/shared/password"
	"github.com/spike-dev/spike/shared/password/strength"
)

func TestReadPasswordFromPipe(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", password.MaxLen)
	tests := []struct {
		name     string
		input    string
		want     string
		wantErr  error
		wantRest string // what is left unread on stdin
	}{
		{name: "LF", input: "correct horse\n", want: "correct horse"},
		{name: "CRLF", input: "correct horse\r\n", want: "correct horse"},
		{name: "no line ending", input: "correct horse", want: "correct horse"},
		{name: "only the first line", input: "first line\nsecond line\n", want: "first line", wantRest: "second line\n"},
		{name: "spaces kept", input: " pass word \n", want: " pass word "},
		{name: "inner CR kept", input: "a\rb\n", want: "a\rb"},
		{name: "longest", input: long + "\r\n", want: long},
		{name: "too long", input: long + "x\n", wantErr: errPasswordTooLong},
		{name: "empty input", input: "", wantErr: errEmptyPassword},
		{name: "empty line", input: "\n", wantErr: errEmptyPassword},
		{name: "empty CRLF line", input: "\r\nsecret\n", wantErr: errEmptyPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdin := strings.NewReader(tt.input)
			var prompt strings.Builder
			got, err := readPassword(t.Context(), stdin, &prompt, true, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("readPassword(%q) error = %v, want %v", tt.input, err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("readPassword(%q) = %q, want %q", tt.input, got, tt.want)
			}
			if prompt.Len() != 0 {
				t.Errorf("prompted %q on a pipe", prompt.String())
			}
			if tt.wantErr == nil {
				rest, _ := io.ReadAll(stdin)
				if string(rest) != tt.wantRest {
					t.Errorf("left %q on stdin, want %q", rest, tt.wantRest)
				}
			}
		})
	}
}

func TestReadPasswordReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := readPassword(t.Context(), iotest.ErrReader(boom), io.Discard, false, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("readPassword error = %v, want %v", err, boom)
	}
}

func TestReadNewPassword(t *testing.T) {
	t.Parallel()
	refuse := errors.New("refused")
	check := func(pw []byte) error {
		if string(pw) == "weak" {
			return refuse
		}
		return nil
	}
	tests := []struct {
		name    string
		input   string
		want    string
		wantErr error
		refused bool // the error is a newPasswordError
	}{
		{name: "accepted", input: "strong\n", want: "strong"},
		{name: "refused", input: "weak\n", wantErr: refuse, refused: true},
		{name: "empty before the check", input: "\n", wantErr: errEmptyPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := readPassword(t.Context(), strings.NewReader(tt.input), io.Discard, true, check)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("readPassword error = %v, want %v", err, tt.wantErr)
			}
			var refused *newPasswordError
			if tt.refused && (!errors.As(err, &refused) || err.Error() != "password refused") {
				t.Errorf("readPassword error = %#v, want a newPasswordError saying %q", err, "password refused")
			}
			if string(got) != tt.want {
				t.Errorf("readPassword = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReadNewPasswordTerminal checks that a refused new password is
// refused before the admin is asked to repeat it.
func TestReadNewPasswordTerminal(t *testing.T) {
	t.Parallel()
	master, tty := openTerminal(t)
	if _, err := master.WriteString("passwordpassword\n"); err != nil {
		t.Fatal(err)
	}
	var prompt strings.Builder
	check := func(pw []byte) error { return strength.Check(pw) }
	_, err := readPassword(t.Context(), tty, &prompt, true, check)
	if !errors.Is(err, strength.ErrWeak) {
		t.Fatalf("readPassword error = %v, want ErrWeak", err)
	}
	if got, want := prompt.String(), "Admin password: \n"; got != want {
		t.Errorf("prompted %q, want %q", got, want)
	}
}
