package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

// writeEnv renders data as POSIX shell assignments, KEY='value', one per
// line and sorted by key, so that `eval "$(spike secret get PATH -o env)"`
// sets each key to its exact value: newlines, quotes and any other bytes
// survive because single quotes keep everything literal except a single
// quote, which is written as '\”. Nothing is printed when a key is not a
// shell variable name or a value holds a NUL byte, which no shell variable
// can hold.
func writeEnv(w io.Writer, data map[string]string) error {
	keys := slices.Sorted(maps.Keys(data))
	var bad []string
	for _, k := range keys {
		if !shellName(k) {
			bad = append(bad, fmt.Sprintf("%q", k))
		}
	}
	switch len(bad) {
	case 0:
	case 1:
		return fmt.Errorf("cannot print the secret as shell variables: key %s is not a valid shell variable name (letters, digits and '_', not starting with a digit); use -o json or --field instead", bad[0])
	default:
		return fmt.Errorf("cannot print the secret as shell variables: keys %s are not valid shell variable names (letters, digits and '_', not starting with a digit); use -o json or --field instead", strings.Join(bad, ", "))
	}
	var b strings.Builder
	for _, k := range keys {
		v := data[k]
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("cannot print the secret as shell variables: the value of key %q holds a NUL byte, which a shell variable cannot hold; use -o json instead", k)
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(shellQuote(v))
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell: inside single quotes every byte is
// literal, so only the single quote itself needs care ('\”).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellName reports whether s is a POSIX shell variable name:
// [A-Za-z_][A-Za-z0-9_]*.
func shellName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// writeField writes the value of key in s exactly, with nothing added, so
// that $(spike secret get PATH --field KEY) is the value (the shell drops
// trailing newlines of a command substitution; redirect to a file to keep
// them).
func writeField(w io.Writer, s *nexusv1.Secret, key string) error {
	v, ok := s.GetData()[key]
	if !ok {
		keys := slices.Sorted(maps.Keys(s.GetData()))
		for i, k := range keys {
			keys[i] = printable(k)
		}
		have := "it has no keys"
		if len(keys) > 0 {
			have = "its keys are " + strings.Join(keys, ", ")
		}
		return fmt.Errorf("version %d of %s has no key %q; %s", s.GetVersion(), printable(s.GetPath()), key, have)
	}
	if _, err := io.WriteString(w, v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
