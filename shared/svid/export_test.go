package svid

import "time"

// SetRecheck sets how often a file source looks at its files again, for
// tests that replace them.
func SetRecheck(s *Source, d time.Duration) {
	if f, ok := s.svids.(*fileSource); ok {
		f.mu.Lock()
		f.recheck = d
		f.mu.Unlock()
	}
}
