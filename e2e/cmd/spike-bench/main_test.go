package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunHelpAndUsageErrors(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, getenv, &out, &errOut); err != nil {
		t.Errorf("-h: %v", err)
	}
	if !strings.Contains(errOut.String(), "usage: spike-bench") {
		t.Errorf("-h printed %q, want the usage", errOut.String())
	}
	err := run(t.Context(), []string{"-concurrency", "0"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "-concurrency") {
		t.Errorf("bad -concurrency: %v", err)
	}
	// No SVID configured: refused before any call to Nexus.
	err = run(t.Context(), []string{"-database-url", "postgres://x"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "SVID") {
		t.Errorf("without an SVID: %v", err)
	}
}
