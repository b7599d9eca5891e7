package secret

import (
	"sort"
	"unicode/utf8"

	"github.com/spike-dev/spike/nexus/internal/fault"
)

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
