//go:build !linux

package main

// disableCoreDumps does nothing outside Linux.
func disableCoreDumps() error { return nil }
