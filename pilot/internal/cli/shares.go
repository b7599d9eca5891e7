package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxShares is the most shares a split has (Keeper's limit).
const maxShares = 16

// maxShareLine bounds one line of share input: a share is about 120 bytes.
const maxShareLine = 512

var errNoShares = errors.New("no shares given")

// shareSpec is the value of --shares K/N: N shares, any K of which unseal.
type shareSpec struct{ k, n uint32 }

func (s *shareSpec) String() string {
	if s.zero() {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.k, s.n)
}

// Set parses K/N with 1 ≤ K ≤ N ≤ 16.
func (s *shareSpec) Set(v string) error {
	k, n, ok := strings.Cut(v, "/")
	kk, err1 := strconv.ParseUint(k, 10, 8)
	nn, err2 := strconv.ParseUint(n, 10, 8)
	if !ok || err1 != nil || err2 != nil || kk < 1 || kk > nn || nn > maxShares {
		return fmt.Errorf("want K/N with 1 ≤ K ≤ N ≤ %d, e.g. 3/5", maxShares)
	}
	s.k, s.n = uint32(kk), uint32(nn)
	return nil
}

func (s *shareSpec) Type() string { return "K/N" }

func (s *shareSpec) zero() bool { return s.k == 0 && s.n == 0 }

// shareThreshold reads K from a share's text form
// (spike-share-v1:<keyring>:<i>-of-<n>:k<K>:<payload>), or 0 if it has none.
func shareThreshold(share []byte) int {
	f := bytes.Split(share, []byte(":"))
	if len(f) != 5 || !bytes.HasPrefix(f[3], []byte("k")) {
		return 0
	}
	k, err := strconv.Atoi(string(f[3][1:]))
	if err != nil || k < 1 || k > maxShares {
		return 0
	}
	return k
}

// readShares reads shares, one a line, until as many as the first one's
// threshold are read (or end of input, or on a terminal an empty line).
// On a terminal each is asked for without echo, labelled with what;
// otherwise lines are read from stdin byte by byte, so that a password on
// the line after the last share is left for the next read. Blank lines
// are skipped. Keeper checks the shares themselves.
func readShares(ctx context.Context, what string, stdin io.Reader, prompt io.Writer) ([][]byte, error) {
	fd, tty := terminalFD(stdin)
	var shares [][]byte
	fail := func(err error) ([][]byte, error) {
		clearAll(shares)
		return nil, err
	}
	for len(shares) < maxShares {
		if k := threshold(shares); k > 0 && len(shares) >= k {
			break
		}
		var (
			line []byte
			eof  bool
			err  error
		)
		if tty {
			fmt.Fprintf(prompt, "%s %d (empty line to stop): ", what, len(shares)+1)
			line, err = readNoEcho(ctx, fd)
			fmt.Fprintln(prompt)
			eof = len(bytes.TrimSpace(line)) == 0
		} else {
			line, eof, err = readLine(stdin)
		}
		if err != nil {
			return fail(err)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			shares = append(shares, line)
		}
		if eof {
			break
		}
	}
	if len(shares) == 0 {
		return nil, errNoShares
	}
	return shares, nil
}

// threshold is the threshold named by the first share, 0 if none.
func threshold(shares [][]byte) int {
	if len(shares) == 0 {
		return 0
	}
	return shareThreshold(shares[0])
}

// readLine reads one line of share input from r byte by byte, without
// its line ending; eof reports the end of the input.
func readLine(r io.Reader) (line []byte, eof bool, err error) {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return line, false, nil
			}
			if len(line) == maxShareLine {
				clear(line)
				return nil, false, fmt.Errorf("a line of share input is longer than %d bytes", maxShareLine)
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			return line, true, nil
		}
		if err != nil {
			clear(line)
			return nil, false, fmt.Errorf("read shares from stdin: %w", err)
		}
	}
}

func clearAll(bs [][]byte) {
	for _, b := range bs {
		clear(b)
	}
}
