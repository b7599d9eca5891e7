package check

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Paths from this package's directory.
const (
	chartDir    = "../spike"
	profilesDir = "../profiles"
	repoRoot    = "../../.."
)

// defaultRelease is the release most tests render.
var defaultRelease = Release{Name: "spike", Namespace: "spike"}

var loadEnv = sync.OnceValue(func() error {
	var err error
	programEnv, err = ProgramEnv(repoRoot)
	return err
})

// rendered is a chart rendered and decoded, with its problems.
type rendered struct {
	objects  *Objects
	problems []string
}

// renderValues renders the chart (edited by edit, when not nil) for rel
// with vals, decodes the objects strictly and runs every rule. The error
// is the schema's, a template's or the decoder's.
func renderValues(t *testing.T, vals map[string]any, rel Release, edit func(name string, data []byte) []byte) (*rendered, error) {
	t.Helper()
	if err := loadEnv(); err != nil {
		t.Fatal(err)
	}
	ch, err := LoadChart(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		for _, f := range ch.Templates {
			f.Data = edit(f.Name, f.Data)
		}
	}
	manifests, err := Render(t.Context(), ch, vals, rel)
	if err != nil {
		return nil, err
	}
	objs, err := Decode(Documents(manifests))
	if err != nil {
		return nil, err
	}
	want := Want{Release: rel, TrustDomain: "spike.local", ClusterDomain: "cluster.local"}
	if td, ok := vals["trustDomain"].(string); ok {
		want.TrustDomain = td
	}
	if cd, ok := vals["clusterDomain"].(string); ok {
		want.ClusterDomain = cd
	}
	return &rendered{objs, Problems(objs, want)}, nil
}

// profile reads a values file of deploy/helm/profiles ("" for none).
func profile(t *testing.T, name string) map[string]any {
	t.Helper()
	if name == "" {
		return map[string]any{}
	}
	b, err := os.ReadFile(filepath.Join(profilesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := ReadValues(b)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// shape is what a profile is expected to create.
type shape struct {
	nexus, keepers, postgresInstances, serviceMonitors, clusterSPIFFEIDs int
	dbHost                                                               string
}

// summary reads a rendered chart's shape.
func summary(o *Objects) shape {
	var s shape
	for _, d := range o.Deployments {
		s.nexus += int(*d.Spec.Replicas)
	}
	for _, st := range o.StatefulSets {
		s.keepers += int(*st.Spec.Replicas)
	}
	for _, c := range o.PostgresClusters {
		s.postgresInstances += c.Spec.Instances
	}
	s.serviceMonitors = len(o.ServiceMonitors)
	s.clusterSPIFFEIDs = len(o.ClusterSPIFFEIDs)
	if n := byComponent(o.workloads(), "nexus"); len(n) == 1 {
		if c, _ := connection(n[0], "SPIKE_DATABASE_URL"); c.url != nil {
			s.dbHost = c.url.Hostname()
		}
	}
	return s
}

// TestProfiles renders the default values and every documented profile,
// expects no problem, and the shape each profile promises.
func TestProfiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		profile string
		rel     Release
		want    shape
	}{
		{"", defaultRelease, shape{2, 3, 3, 0, 3, "spike-db-rw.spike.svc"}},
		{"values-external-db.yaml", Release{"prod", "secrets"}, shape{2, 3, 0, 0, 3, "postgres.db.example.internal"}},
		{"values-ha.yaml", defaultRelease, shape{3, 3, 3, 2, 3, "spike-db-rw.spike.svc"}},
		{"values-minimal.yaml", defaultRelease, shape{1, 1, 0, 0, 2, "10.20.0.5"}},
	}
	entries, err := os.ReadDir(profilesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests)-1 {
		t.Errorf("%s holds %d profiles, the test covers %d", profilesDir, len(entries), len(tests)-1)
	}
	for _, tt := range tests {
		t.Run("profile="+tt.profile, func(t *testing.T) {
			t.Parallel()
			r, err := renderValues(t, profile(t, tt.profile), tt.rel, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.problems {
				t.Error(p)
			}
			if diff := cmp.Diff(tt.want, summary(r.objects), cmp.AllowUnexported(shape{})); diff != "" {
				t.Errorf("shape (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRulesRun makes sure no rule is vacuous on the default values: each
// finds the objects it checks.
func TestRulesRun(t *testing.T) {
	t.Parallel()
	r, err := renderValues(t, profile(t, "values-ha.yaml"), defaultRelease, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := r.objects
	got := map[string]int{
		"Deployment": len(o.Deployments), "StatefulSet": len(o.StatefulSets), "Job": len(o.Jobs),
		"Service": len(o.Services), "ServiceAccount": len(o.ServiceAccounts), "PodDisruptionBudget": len(o.PDBs),
		"NetworkPolicy": len(o.NetworkPolicies), "ClusterSPIFFEID": len(o.ClusterSPIFFEIDs),
		"Cluster": len(o.PostgresClusters), "ServiceMonitor": len(o.ServiceMonitors),
	}
	want := map[string]int{
		"Deployment": 1, "StatefulSet": 1, "Job": 1, "Service": 2, "ServiceAccount": 3, "PodDisruptionBudget": 2,
		"NetworkPolicy": 4, "ClusterSPIFFEID": 3, "Cluster": 1, "ServiceMonitor": 2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects by kind (-want +got):\n%s", diff)
	}
	if len(programEnv["keeper"]) < 5 || !programEnv["keeper"]["SPIKE_KEEPER_PEERS"] || !programEnv["migrate"]["SPIKE_DATABASE_OWNER_URL"] {
		t.Errorf("the programs' variables were not read: %v", programEnv)
	}
}

// problemsContaining returns the problems that contain s.
func problemsContaining(problems []string, s string) []string {
	var out []string
	for _, p := range problems {
		if strings.Contains(p, s) {
			out = append(out, p)
		}
	}
	return out
}
