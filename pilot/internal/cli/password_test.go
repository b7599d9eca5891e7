package cli

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/spike-dev/spike/shared/password"
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
			got, err := readPassword(t.Context(), stdin, &prompt, true)
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
	_, err := readPassword(t.Context(), iotest.ErrReader(boom), io.Discard, false)
	if !errors.Is(err, boom) {
		t.Fatalf("readPassword error = %v, want %v", err, boom)
	}
}
