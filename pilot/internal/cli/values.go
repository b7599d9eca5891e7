package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// maxInputBytes bounds one value read from a file or stdin, so that a
// mistake like k=@/dev/zero fails quickly instead of filling memory. Nexus
// enforces the real, smaller limits.
const maxInputBytes = 32 << 20

// stdinArg is the argument that stands for stdin: as the only argument after
// PATH it means "a JSON object on stdin", as a value (k=-) it means "the
// value is all of stdin".
const stdinArg = "-"

// inputError is a mistake in the values the user gave; the command reports
// it as a usage error. Its message names keys and files, never values.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// valueSpec is one parsed KEY=VALUE argument: a literal value, or where to
// read the value from.
type valueSpec struct {
	key   string
	value string // the literal value, or the file name when fromFile
	file  bool   // KEY=@FILE
	stdin bool   // KEY=-
}

// readValues turns the arguments after PATH into the data of a secret
// version. Either args is the single argument "-" and stdin holds a JSON
// object of string values, or the single argument @FILE and the file
// holds one, or each argument is KEY=VALUE, KEY=@FILE (the
// file's contents) or KEY=- (all of stdin; one key at most). Values are
// taken byte for byte, without trimming; they must be UTF-8 text. A terminal
// on stdin gets a hint on prompt that spike is waiting for input.
func readValues(args []string, stdin io.Reader, prompt io.Writer) (map[string]string, error) {
	if len(args) == 1 && strings.HasPrefix(args[0], "@") && len(args[0]) > 1 {
		// @FILE: a JSON object of string values from a file, as "-" reads
		// one from stdin.
		b, err := readFile(args[0][1:])
		if err != nil {
			return nil, inputErrorf("read %s: %v", args[0][1:], err)
		}
		return parseJSONObject(b, args[0][1:])
	}
	if len(args) == 1 && args[0] == stdinArg {
		hint(stdin, prompt, "Reading a JSON object of string values from stdin; end it with Ctrl-D.")
		b, err := readAllLimited(stdin, "stdin")
		if err != nil {
			return nil, err
		}
		return parseJSONObject(b, "stdin")
	}
	specs, err := parsePairs(args)
	if err != nil {
		return nil, err
	}
	data := make(map[string]string, len(specs))
	for _, s := range specs {
		v, err := s.read(stdin, prompt)
		if err != nil {
			return nil, err
		}
		data[s.key] = v
	}
	return data, nil
}

// parsePairs checks the syntax of KEY=VALUE arguments without reading any
// file or stdin. The split is at the first '=', so values may contain '='.
// Errors name the argument's position and the key, never the value, because
// the value is a secret.
func parsePairs(args []string) ([]valueSpec, error) {
	specs := make([]valueSpec, 0, len(args))
	seen := make(map[string]bool, len(args))
	stdinKey := ""
	for i, arg := range args {
		if arg == stdinArg {
			return nil, inputErrorf(`"-" (a JSON object on stdin) must be the only argument after PATH`)
		}
		key, value, ok := strings.Cut(arg, "=")
		switch {
		case !ok:
			return nil, inputErrorf("pair %d is not KEY=VALUE, KEY=@FILE or KEY=-", i+1)
		case key == "":
			return nil, inputErrorf("pair %d has an empty key", i+1)
		case !utf8.ValidString(key):
			return nil, inputErrorf("key %q of pair %d is not valid UTF-8 text", key, i+1)
		case seen[key]:
			return nil, inputErrorf("key %q is given twice", key)
		}
		seen[key] = true
		s := valueSpec{key: key, value: value}
		switch {
		case value == stdinArg:
			if stdinKey != "" {
				return nil, inputErrorf(`keys %q and %q both read their value from stdin ("-"); only one value can come from stdin`, stdinKey, key)
			}
			stdinKey = key
			s.stdin, s.value = true, ""
		case strings.HasPrefix(value, "@"):
			s.file, s.value = true, value[1:]
			if s.value == "" {
				return nil, inputErrorf(`key %q: "@" must be followed by a file name`, key)
			}
		case !utf8.ValidString(value):
			return nil, inputErrorf("the value of key %q is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)", key)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// read returns the value of s, reading its file or stdin when it names one.
func (s valueSpec) read(stdin io.Reader, prompt io.Writer) (string, error) {
	var (
		b    []byte
		err  error
		from string
	)
	switch {
	case s.file:
		from = "file " + s.value
		b, err = readFile(s.value)
		if err != nil {
			return "", fmt.Errorf("read the value of key %q: %w", s.key, err)
		}
	case s.stdin:
		from = "stdin"
		hint(stdin, prompt, fmt.Sprintf("Reading the value of %q from stdin; end it with Ctrl-D.", s.key))
		b, err = readAllLimited(stdin, "stdin")
		if err != nil {
			return "", fmt.Errorf("read the value of key %q: %w", s.key, err)
		}
	default:
		return s.value, nil
	}
	if !utf8.Valid(b) {
		return "", inputErrorf("the value of key %q (from %s) is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)", s.key, from)
	}
	return string(b), nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(f, name)
}

// readAllLimited reads r to the end, failing if it holds more than
// maxInputBytes; what names r in that error.
func readAllLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > maxInputBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB", what, maxInputBytes>>20)
	}
	return b, nil
}

// parseJSONObject reads a JSON object whose values are all strings, such as
// {"user":"admin","pass":"s3cr3t"}. It rejects duplicate keys, which
// encoding/json would silently merge, and invalid UTF-8, which it would
// silently replace. Errors never quote the input, which holds secrets.
func parseJSONObject(b []byte, from string) (map[string]string, error) {
	in := "in " + from
	if from == "stdin" {
		in = "on stdin"
	}
	const want = `one JSON object of string values, such as {"user":"admin","token":"abc"}`
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, inputErrorf("%s is empty; it must hold %s", from, want)
	}
	if !utf8.Valid(b) {
		return nil, inputErrorf("%s is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)", from)
	}
	var raw json.RawMessage // a full syntax check first: its errors have exact offsets
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, jsonError(err, len(b), from)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(err, len(b), from)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, inputErrorf("%s must hold %s; it holds %s", from, want, jsonKind(tok))
	}
	data := make(map[string]string)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err, len(b), from)
		}
		key := tok.(string) // inside an object, Token returns keys as strings
		if key == "" {
			return nil, inputErrorf("the JSON object %s has an empty key", in)
		}
		if _, dup := data[key]; dup {
			return nil, inputErrorf("key %q is given twice in the JSON object %s", key, in)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonError(err, len(b), from)
		}
		value, ok := tok.(string)
		if !ok {
			return nil, inputErrorf("the value of key %q in the JSON object %s is %s, not a string; put it in quotes", key, in, jsonKind(tok))
		}
		data[key] = value
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonError(err, len(b), from)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, inputErrorf("%s holds more than one JSON value; it must hold %s", from, want)
	}
	if len(data) == 0 {
		return nil, inputErrorf("the JSON object %s has no keys", in)
	}
	return data, nil
}

// jsonError describes a JSON syntax error in n bytes of input by position
// only, never quoting the input.
func jsonError(err error, n int, from string) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax) && syntax.Offset >= int64(n):
		return inputErrorf("%s is not valid JSON: it ends in the middle of the object", from)
	case errors.As(err, &syntax):
		return inputErrorf("%s is not valid JSON: syntax error at byte %d", from, syntax.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return inputErrorf("%s is not valid JSON: it ends in the middle of the object", from)
	default:
		return inputErrorf("%s is not valid JSON", from)
	}
}

// jsonKind names the kind of JSON value that starts with tok, for a
// sentence: "a number", "null".
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "a list"
		}
		return "an object"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case string:
		return "a string"
	default:
		return "a value"
	}
}

// hint tells a person at a terminal that spike waits for input on stdin.
// Pipes and files get no hint.
func hint(stdin io.Reader, prompt io.Writer, msg string) {
	if _, ok := terminalFD(stdin); ok {
		fmt.Fprintln(prompt, msg)
	}
}
