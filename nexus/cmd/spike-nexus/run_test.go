package main

import (
	"io"
	"strings"
	"testing"
)

// Arguments other than none (serve) or "migrate" are refused with the usage.
func TestRunRefusesUnknownArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"serve"}, {"migrate", "now"}, {"floor", "now"}, {"--help"}} {
		err := run(t.Context(), args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "spike-nexus migrate") {
			t.Errorf("run %q = %v, want the usage", args, err)
		}
	}
}

// migrate without its configuration says what is missing.
func TestMigrateNeedsOwnerAndRole(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"migrate"}, func(string) string { return "" }, io.Discard)
	for _, want := range []string{"SPIKE_DATABASE_OWNER_URL", "SPIKE_DATABASE_ROLE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("migrate without configuration = %v, want it to name %s", err, want)
		}
	}
}

// floor with a bad configuration says what is wrong with it.
func TestFloorConfiguration(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SPIKE_TRUST_DOMAIN": "spike.local", "SPIKE_FLOOR_VALUE_SIZE": "0", "SPIKE_FLOOR_OPS_LISTEN": "nowhere"}
	err := run(t.Context(), []string{"floor"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{"SPIKE_FLOOR_VALUE_SIZE", "SPIKE_FLOOR_OPS_LISTEN"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("floor with a bad configuration = %v, want it to name %s", err, want)
		}
	}
}
