// Package secret holds the rules a secret's path and data must follow. It does
// no I/O: handlers validate requests here before anything reaches Keeper or the
// database.
package secret

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

const (
	// MaxPathLen is the longest path (and list prefix), in bytes. It keeps
	// index entries and audit records small.
	MaxPathLen = 512
	// MaxKeys is the most key/value pairs one secret version may hold.
	MaxKeys = 256
	// MaxKeyLen is the longest key of a secret's data, in bytes.
	MaxKeyLen = 128
	// MaxDataSize bounds the sum of the lengths of all keys and values of one
	// secret version, in bytes (512 KiB), so a version fits comfortably in one
	// database row and one RPC message.
	MaxDataSize = 512 << 10
)

// ValidatePath reports whether p is a well-formed secret path: 1 to MaxPathLen
// bytes of segments separated by '/', each made of letters, digits, '.', '_'
// and '-', with no empty, "." or ".." segment and no leading or trailing '/'.
// The error is a *fault.Error with code fault.Invalid.
func ValidatePath(p string) error {
	if p == "" {
		return fault.New(fault.Invalid, "path: must not be empty")
	}
	return validate("path", p, false)
}

// ValidatePrefix reports whether p may be used to list secrets: empty (list
// everything) or the beginning of a path, which may end with '/'. Otherwise the
// rules of ValidatePath apply. The error is a *fault.Error with code
// fault.Invalid.
func ValidatePrefix(p string) error {
	if p == "" {
		return nil
	}
	return validate("prefix", p, true)
}

// validate checks p against the path grammar, naming field in its errors.
func validate(field, p string, trailingSlash bool) error {
	if len(p) > MaxPathLen {
		return fault.New(fault.Invalid, "%s: must be at most %d bytes, got %d", field, MaxPathLen, len(p))
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return fault.New(fault.Invalid, "%s: must not contain control characters (byte %d)", field, i)
		case !pathByte(c):
			return fault.New(fault.Invalid,
				"%s: may contain only letters, digits, '.', '_', '-' and '/' (byte %d)", field, i)
		}
	}
	if p[0] == '/' {
		return fault.New(fault.Invalid, "%s: must not start with '/'", field)
	}
	if trailingSlash {
		p = strings.TrimSuffix(p, "/")
	} else if strings.HasSuffix(p, "/") {
		return fault.New(fault.Invalid, "%s: must not end with '/'", field)
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fault.New(fault.Invalid, "%s: must not contain empty segments (\"//\")", field)
		case ".", "..":
			return fault.New(fault.Invalid, "%s: must not contain %q segments", field, seg)
		}
	}
	return nil
}

// pathByte reports whether c may appear in a path.
func pathByte(c byte) bool {
	return c == '/' || keyByte(c)
}

// keyByte reports whether c may appear in a path segment or a data key.
func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ValidateData reports whether data may be stored as one secret version: 1 to
// MaxKeys keys, each 1 to MaxKeyLen bytes of letters, digits, '.', '_' and '-',
// values valid UTF-8, and at most MaxDataSize bytes of keys and values in
// total. Errors name the offending key but never show a value. The error is a
// *fault.Error with code fault.Invalid.
func ValidateData(data map[string]string) error {
	if len(data) == 0 {
		return fault.New(fault.Invalid, "data: must have at least one key")
	}
	if len(data) > MaxKeys {
		return fault.New(fault.Invalid, "data: must have at most %d keys, got %d", MaxKeys, len(data))
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same key every time
	size := 0
	for _, k := range keys {
		if err := checkKey("data", k); err != nil {
			return err
		}
		if !utf8.ValidString(data[k]) {
			return fault.New(fault.Invalid, "data: value of key %q must be valid UTF-8", k)
		}
		size += len(k) + len(data[k])
	}
	if size > MaxDataSize {
		return fault.New(fault.Invalid, "data: keys and values must total at most %d bytes, got %d", MaxDataSize, size)
	}
	return nil
}

// checkKey checks one key of a secret's data or custom metadata, naming
// field in its errors.
func checkKey(field, k string) error {
	if k == "" {
		return fault.New(fault.Invalid, "%s: keys must not be empty", field)
	}
	if len(k) > MaxKeyLen {
		return fault.New(fault.Invalid, "%s: key %q...: must be at most %d bytes, got %d",
			field, k[:16], MaxKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if !keyByte(k[i]) {
			return fault.New(fault.Invalid,
				"%s: key %q: may contain only letters, digits, '.', '_' and '-' (byte %d)", field, k, i)
		}
	}
	return nil
}

const (
	// MaxCustomKeys is the most custom metadata entries a secret may hold.
	MaxCustomKeys = 64
	// MaxCustomValueLen is the longest custom metadata value, in bytes.
	MaxCustomValueLen = 512
	// MaxVersionsPerRequest bounds the version list of delete, undelete and
	// destroy.
	MaxVersionsPerRequest = 100
	// DefaultPageSize is the page size of a listing that asks for none.
	DefaultPageSize = 100
	// MaxPageSize is the largest page a listing returns.
	MaxPageSize = 1000
	// MaxMaxVersions is the largest max_versions a secret may set.
	MaxMaxVersions = 1000
)

// ValidateCustomMetadata reports whether m may be stored as a secret's
// custom metadata: at most MaxCustomKeys entries, keys as for data, values
// valid UTF-8 of at most MaxCustomValueLen bytes.
func ValidateCustomMetadata(m map[string]string) error {
	if len(m) > MaxCustomKeys {
		return fault.New(fault.Invalid, "custom_metadata: must have at most %d keys, got %d", MaxCustomKeys, len(m))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := checkKey("custom_metadata", k); err != nil {
			return err
		}
		v := m[k]
		if len(v) > MaxCustomValueLen {
			return fault.New(fault.Invalid, "custom_metadata: value of key %q must be at most %d bytes, got %d", k, MaxCustomValueLen, len(v))
		}
		if !utf8.ValidString(v) {
			return fault.New(fault.Invalid, "custom_metadata: value of key %q must be valid UTF-8", k)
		}
	}
	return nil
}

// ValidateVersions reports whether versions may name the versions of a
// delete, undelete or destroy: at most MaxVersionsPerRequest positive
// numbers (none means the latest).
func ValidateVersions(versions []int64) error {
	if len(versions) > MaxVersionsPerRequest {
		return fault.New(fault.Invalid, "versions: must name at most %d versions, got %d", MaxVersionsPerRequest, len(versions))
	}
	for _, v := range versions {
		if v <= 0 {
			return fault.New(fault.Invalid, "versions: %d is not a version number (versions start at 1)", v)
		}
	}
	return nil
}

// ValidateVersion reports whether v may name a version to read: 0 (the
// latest) or a version number.
func ValidateVersion(v int64) error {
	if v < 0 {
		return fault.New(fault.Invalid, "version: must be 0 (the latest) or a version number, got %d", v)
	}
	return nil
}

// ValidateCAS reports whether cas may be a check-and-set version.
func ValidateCAS(cas int64) error {
	if cas < 0 {
		return fault.New(fault.Invalid, "cas: must be 0 (create only) or a version number, got %d", cas)
	}
	return nil
}

// ValidateMaxVersions reports whether n may be a secret's max_versions.
func ValidateMaxVersions(n int32) error {
	if n < 0 || n > MaxMaxVersions {
		return fault.New(fault.Invalid, "max_versions: must be 0 (the default) to %d, got %d", MaxMaxVersions, n)
	}
	return nil
}

// PageSize validates a requested page size and applies the default.
func PageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, fault.New(fault.Invalid, "page_size: must be 1 to %d (0: %d), got %d", MaxPageSize, DefaultPageSize, n)
	}
	return int(n), nil
}
