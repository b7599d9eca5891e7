package cli

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// versionList is the value of a --versions flag: comma-separated version
// numbers, which may also be given by repeating the flag. Duplicates are
// dropped; the order is kept.
type versionList []int64

func (l *versionList) String() string {
	parts := make([]string, len(*l))
	for i, v := range *l {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ",")
}

// Set adds the versions in s, e.g. "1,2,3".
func (l *versionList) Set(s string) error {
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return errors.New("the list has an empty entry; give versions like 1,2,3")
		}
		v, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a version number", field)
		}
		if v < 1 {
			return fmt.Errorf("versions start at 1, got %d", v)
		}
		if !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
	}
	return nil
}

// Type names the value in the flag's help.
func (l *versionList) Type() string { return "versions" }

// parseCustom turns --custom KEY=VALUE flags into a custom metadata map.
// The split is at the first '='. Errors name keys, never values.
func parseCustom(pairs []string) (map[string]string, error) {
	custom := make(map[string]string, len(pairs))
	for _, p := range pairs {
		key, value, ok := strings.Cut(p, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("--custom needs KEY=VALUE, got an argument without '='")
		case key == "":
			return nil, errors.New("--custom has an empty key")
		case !utf8.ValidString(key):
			return nil, fmt.Errorf("--custom key %q is not valid UTF-8 text", key)
		case !utf8.ValidString(value):
			return nil, fmt.Errorf("the --custom value of key %q is not valid UTF-8 text", key)
		}
		if _, dup := custom[key]; dup {
			return nil, fmt.Errorf("--custom key %q is given twice", key)
		}
		custom[key] = value
	}
	return custom, nil
}
