//go:build !unix

package main

import "time"

// selfCPU reports spike-bench's CPU time as unknown: Getrusage is Unix only.
func selfCPU() time.Duration { return -1 }
