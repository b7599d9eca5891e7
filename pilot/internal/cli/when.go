package cli

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// day is the unit of the 'd' suffix.
const day = 24 * time.Hour

// parseWhen reads a point in time: an RFC 3339 time, a date (midnight UTC)
// or a duration that counts back from now, which is cut to the second so
// that the time is readable.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	d, err := parseAgo(s)
	if errors.Is(err, errNotDuration) {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (2025-03-01T00:00:00Z), a date (2025-03-01) or a duration ago (30m, 1h, 7d)", s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", s, err)
	}
	return now.UTC().Add(-d).Truncate(time.Second), nil
}

// errNotDuration says that a string is not written like a duration.
var errNotDuration = errors.New("not a duration")

// parseAgo reads a positive duration: Go's syntax (90m, 1h30m) with an
// optional leading number of days (7d, 1d12h).
func parseAgo(s string) (time.Duration, error) {
	if s == "" {
		return 0, errNotDuration
	}
	var d time.Duration
	rest := s
	if days, after, ok := strings.Cut(s, "d"); ok {
		if days == "" || strings.Trim(days, "0123456789") != "" {
			return 0, errNotDuration
		}
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(day) {
			return 0, errors.New("too many days")
		}
		d, rest = time.Duration(n)*day, after
	}
	if rest != "" {
		r, err := time.ParseDuration(rest)
		switch {
		case err != nil:
			return 0, errNotDuration
		case r < 0:
			return 0, errors.New("a duration ago must be positive")
		case r > math.MaxInt64-d:
			return 0, errors.New("the duration is too long")
		}
		d += r
	}
	if d <= 0 {
		return 0, errors.New("a duration ago must be positive")
	}
	return d, nil
}

// formatWhen renders a time given on the command line in UTC, to the
// precision it was given with.
func formatWhen(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// clock returns the time that durations count back from.
func (p *Program) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}
