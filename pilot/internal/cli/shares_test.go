package cli

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readShares stops at the threshold the first share names, so that what
// follows (a new password for rekey) is left for the next read.
func TestReadSharesStopsAtThreshold(t *testing.T) {
	t.Parallel()
	stdin := strings.NewReader(fakeShare(2, 3, 2) + "\n\n" + fakeShare(3, 3, 2) + "\nnew password line\n")
	got, err := readShares(t.Context(), "Share", stdin, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte(fakeShare(2, 3, 2)), []byte(fakeShare(3, 3, 2))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
	pw, err := readPasswordLine(stdin)
	if err != nil || string(pw) != "new password line" {
		t.Errorf("the line after the shares = %q, %v", pw, err)
	}
}

func TestReadSharesUntilEOF(t *testing.T) {
	t.Parallel()
	// Without a threshold it can read (a mistyped first share), it reads
	// to the end: Keeper says what is wrong.
	got, err := readShares(t.Context(), "Share", strings.NewReader("a\nb\nc"), io.Discard)
	if err != nil || len(got) != 3 {
		t.Fatalf("readShares = %q, %v; want 3 lines", got, err)
	}
	if _, err := readShares(t.Context(), "Share", strings.NewReader("\n \n"), io.Discard); !errors.Is(err, errNoShares) {
		t.Errorf("readShares of blank input = %v, want errNoShares", err)
	}
	if _, err := readShares(t.Context(), "Share", strings.NewReader(strings.Repeat("x", maxShareLine+1)), io.Discard); err == nil {
		t.Error("readShares of an overlong line succeeded")
	}
}

func TestShareSpecFlag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"3/5": "3/5", "1/1": "1/1", "16/16": "16/16", "0/3": "", "4/3": "", "2/17": "", "2": "", "a/b": "", "2/3/4": ""} {
		var s shareSpec
		err := s.Set(in)
		if got := s.String(); got != want || (err == nil) != (want != "") {
			t.Errorf("Set(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
