package check

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestHelmLint runs `helm lint --strict`'s rules (Chart.yaml, values,
// templates, dependencies) through the SDK, for every profile: a warning
// fails too.
func TestHelmLint(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "values-external-db.yaml", "values-ha.yaml", "values-minimal.yaml"} {
		res := lint.RunAll(chartDir, profile(t, p), "spike")
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("profile %q: %v", p, m)
			}
		}
	}
	// The same rules refuse a broken value.
	res := lint.RunAll(chartDir, set("keeper.replicas", 0), "spike")
	if res.HighestSeverity != support.ErrorSev {
		t.Errorf("lint accepts keeper.replicas 0: %v", res.Messages)
	}
}
