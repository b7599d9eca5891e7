package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/term"

	"github.com/spike-dev/spike/shared/password"
)

var (
	errEmptyPassword   = errors.New("empty password")
	errPasswordTooLong = fmt.Errorf("password is longer than %d bytes", password.MaxLen)
	errPasswordsDiffer = errors.New("the two passwords differ")
)

// newPasswordError refuses a new password: it says why, never what.
type newPasswordError struct{ err error }

func (e *newPasswordError) Error() string { return "password " + e.err.Error() }

func (e *newPasswordError) Unwrap() error { return e.err }

// readPassword reads the admin password. On a terminal it prompts on
// prompt without echo, twice when confirm is set; otherwise it reads exactly
// one line from stdin, without its line ending, so that scripts can pipe
// it in. A new password (check not nil) must pass check, before it is
// asked again on a terminal; a refusal is a *newPasswordError. The caller
// should clear the result when done.
func readPassword(ctx context.Context, stdin io.Reader, prompt io.Writer, confirm bool, check func([]byte) error) ([]byte, error) {
	return readPasswordAs(ctx, "Admin password", stdin, prompt, confirm, check)
}

// readPasswordAs is readPassword prompting with label on a terminal.
func readPasswordAs(ctx context.Context, label string, stdin io.Reader, prompt io.Writer, confirm bool, check func([]byte) error) ([]byte, error) {
	if fd, ok := terminalFD(stdin); ok {
		return readTerminalPassword(ctx, fd, label, prompt, confirm, check)
	}
	pw, err := readPasswordLine(stdin)
	if err != nil {
		return nil, err
	}
	return checkNew(pw, check)
}

// checkNew returns pw if check accepts it, and clears it if not.
func checkNew(pw []byte, check func([]byte) error) ([]byte, error) {
	if check == nil {
		return pw, nil
	}
	if err := check(pw); err != nil {
		clear(pw)
		return nil, &newPasswordError{err}
	}
	return pw, nil
}

// terminalFD returns the file descriptor of r if r is a terminal.
func terminalFD(r io.Reader) (int, bool) {
	f, ok := r.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// readPasswordLine reads one line from r, byte by byte so that nothing after
// the line is consumed, and strips a trailing "\n" or "\r\n". End of input
// also ends the line.
func readPasswordLine(r io.Reader) ([]byte, error) {
	line := make([]byte, 0, password.MaxLen+2) // room for "\r\n": no copies of the password
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			if len(line) == cap(line)-1 {
				clear(line)
				return nil, errPasswordTooLong
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			clear(line)
			return nil, fmt.Errorf("read password from stdin: %w", err)
		}
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	return checkPassword(line)
}

func checkPassword(pw []byte) ([]byte, error) {
	switch {
	case len(pw) == 0:
		return nil, errEmptyPassword
	case len(pw) > password.MaxLen:
		clear(pw)
		return nil, errPasswordTooLong
	}
	return pw, nil
}

func readTerminalPassword(ctx context.Context, fd int, label string, prompt io.Writer, confirm bool, check func([]byte) error) ([]byte, error) {
	fmt.Fprint(prompt, label+": ")
	pw, err := readNoEcho(ctx, fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return nil, err
	}
	if pw, err = checkPassword(pw); err != nil {
		return nil, err
	}
	if pw, err = checkNew(pw, check); err != nil || !confirm {
		return pw, err
	}
	fmt.Fprint(prompt, "Repeat the password: ")
	again, err := readNoEcho(ctx, fd)
	fmt.Fprintln(prompt)
	defer clear(again)
	if err != nil {
		clear(pw)
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		clear(pw)
		return nil, errPasswordsDiffer
	}
	return pw, nil
}

// readNoEcho reads a line from the terminal fd without echo. When ctx ends
// first (Ctrl-C) it restores the terminal and gives up.
func readNoEcho(ctx context.Context, fd int) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	type result struct {
		pw  []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := term.ReadPassword(fd)
		done <- result{pw, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("read password: %w", r.err)
		}
		return r.pw, nil
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return nil, fmt.Errorf("read password: interrupted: %w", ctx.Err())
	}
}
