package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxAnswerLen bounds the answer to a yes/no question; a longer line is
// a "no".
const maxAnswerLen = 64

// errDeclined says the user answered no to a confirmation.
var errDeclined = errors.New("cancelled")

// confirm asks question on prompt and reads one line from stdin: "y" or
// "yes" (in any case) is yes; anything else, an empty line or the end of
// input is no. When ctx ends first (Ctrl-C) it gives up.
func confirm(ctx context.Context, stdin io.Reader, prompt io.Writer, question string) (bool, error) {
	fmt.Fprintf(prompt, "%s [y/N] ", question)
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readAnswer(stdin)
		done <- result{line, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return false, fmt.Errorf("read the answer: %w", r.err)
		}
		answer := strings.ToLower(strings.TrimSpace(r.line))
		return answer == "y" || answer == "yes", nil
	case <-ctx.Done():
		fmt.Fprintln(prompt)
		return false, fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// readAnswer reads one line from r byte by byte, so that nothing after it
// is consumed. Only the first maxAnswerLen+1 bytes are kept.
func readAnswer(r io.Reader) (string, error) {
	var (
		line []byte
		b    [1]byte
	)
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			if len(line) <= maxAnswerLen {
				line = append(line, b[0])
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
	}
	if len(line) > maxAnswerLen {
		return "", nil
	}
	return string(line), nil
}
