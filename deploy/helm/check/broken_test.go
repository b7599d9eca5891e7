package check

import (
	"strings"
	"testing"
)

// set returns values with one key set, by a dotted path.
func set(path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	out := map[string]any{}
	m := out
	for _, k := range keys[:len(keys)-1] {
		next := map[string]any{}
		m[k] = next
		m = next
	}
	m[keys[len(keys)-1]] = v
	return out
}

// merge merges value maps, later ones winning.
func merge(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				if prev, ok := out[k].(map[string]any); ok {
					out[k] = merge(prev, sub)
					continue
				}
				out[k] = merge(sub)
				continue
			}
			out[k] = v
		}
	}
	return out
}

// TestBrokenValuesRefused gives the chart values that must not install
// and expects each to be refused, by the schema or a template at render
// time (as `helm install` would) or by a rule, with a message that says
// why.
func TestBrokenValuesRefused(t *testing.T) {
	t.Parallel()
	external := profile(t, "values-external-db.yaml")
	tests := []struct {
		name string
		vals map[string]any
		want string // the render error or a problem contains this
	}{
		{"trust domain not a string", set("trustDomain", 42),
			"at '/trustDomain': got number, want string"},
		{"trust domain not a SPIFFE trust domain", set("trustDomain", "Spike.Local"),
			"at '/trustDomain': 'Spike.Local' does not match pattern"},
		{"no Nexus", set("nexus.replicas", 0),
			"at '/nexus/replicas': minimum: got 0, want 1"},
		{"no Keeper", set("keeper.replicas", 0),
			"at '/keeper/replicas': minimum: got 0, want 1"},
		{"more Keepers than Nexus accepts", set("keeper.replicas", 17),
			"at '/keeper/replicas': maximum: got 17, want 16"},
		{"replicas as a string", set("keeper.replicas", "3"),
			"at '/keeper/replicas': got string, want integer"},
		{"image by tag only", merge(set("images.nexus.tag", "latest"), set("images.nexus.digest", "")),
			"at '/images/nexus/digest': '' does not match pattern"},
		{"tag inside the repository", set("images.keeper.repository", "registry.example.com/spike/keeper:1.0"),
			"at '/images/keeper/repository'"},
		{"pilot by tag only", merge(set("images.pilot.tag", "v1"), set("images.pilot.digest", nil)),
			"at '/images/pilot': missing property 'digest'"},
		{"short digest", set("images.pilot.digest", "sha256:abc"),
			"at '/images/pilot/digest'"},
		{"unknown top-level key", set("replicaCount", 3),
			"additional properties 'replicaCount' not allowed"},
		{"misspelt nested key", set("nexus.replica", 3),
			"at '/nexus': additional properties 'replica' not allowed"},
		{"unknown database mode", set("database.mode", "sqlite"),
			"at '/database/mode': value must be one of 'external', 'cloudnativepg'"},
		{"external database without a host", set("database.mode", "external"),
			"at '/database/external/host': minLength: got 0, want 1"},
		{"external database without a CA", merge(external, set("database.external.caSecret", "")),
			"at '/database/external/caSecret': minLength: got 0, want 1"},
		{"network policies on, database peers missing", merge(external, set("database.external.networkPolicyPeers", []any{})),
			"database.external.networkPolicyPeers is required when networkPolicy.enabled"},
		{"network policies off", set("networkPolicy.enabled", false),
			"network policies: Deployment spike-nexus: no NetworkPolicy restricts both its ingress and its egress"},
		{"nobody may call Nexus", set("networkPolicy.nexusClients", []any{}),
			"at '/networkPolicy/nexusClients': minItems: got 0, want 1"},
		{"Nexus serving as the owner", set("database.serving.role", "spike"),
			"database.owner and database.serving must be different roles"},
		{"one Secret for both roles", set("database.serving.secret", "spike-db-owner"),
			"database.owner and database.serving must be different roles with different Secrets"},
		{"role name unfit for a URL", set("database.serving.role", "nexus@x"),
			"at '/database/serving/role'"},
		{"no synchronous standby left", set("database.cloudnativepg.synchronous.number", 3),
			"synchronous.number must be below database.cloudnativepg.instances"},
		{"a single PostgreSQL instance", set("database.cloudnativepg.instances", 1),
			"at '/database/cloudnativepg/instances': minimum: got 1, want 2"},
		{"asynchronous durability", set("database.cloudnativepg.synchronous.dataDurability", "none"),
			"at '/database/cloudnativepg/synchronous/dataDurability'"},
		{"extra env overrides the database", set("nexus.extraEnv", map[string]any{"SPIKE_DATABASE_URL": "postgres://spike@db/spike"}),
			"extraEnv: SPIKE_DATABASE_URL is set by the chart"},
		{"extra env allows a privileged role", set("nexus.extraEnv", map[string]any{"SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE": "true"}),
			"extraEnv: SPIKE_DEV_ALLOW_PRIVILEGED_DB_ROLE is set by the chart"},
		{"extra env misspelt", set("keeper.extraEnv", map[string]any{"SPIKE_KEEPER_RESEED": "2s"}),
			"environment: StatefulSet spike-keeper sets SPIKE_KEEPER_RESEED, which its program does not read"},
		{"extra env not SPIKE's", set("nexus.extraEnv", map[string]any{"GODEBUG": "x"}),
			"invalid propertyName 'GODEBUG'"},
		{"unknown Workload API mode", set("workloadAPI.mode", "socket"),
			"at '/workloadAPI/mode': value must be one of 'csi', 'hostPath'"},
		{"no memory limit", set("nexus.resources.limits.memory", nil), // null deletes the default
			"at '/nexus/resources/limits': missing property 'memory'"},
		{"unknown log level", set("keeper.logLevel", "verbose"),
			"at '/keeper/logLevel': value must be one of"},
		{"admin ID not a SPIFFE ID", set("nexus.adminIDs", []any{"admin"}),
			"at '/nexus/adminIDs/0'"},
		{"admin IDs without Pilot's", set("nexus.adminIDs", []any{"spiffe://spike.local/ops/admin"}),
			"identities: ClusterSPIFFEID spike-spike-pilot issues spiffe://spike.local/spike/pilot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := renderValues(t, tt.vals, defaultRelease, nil)
			switch {
			case err != nil:
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("refused with\n%v\nwant a message containing %q", err, tt.want)
				}
			case len(r.problems) == 0:
				t.Errorf("accepted, want %q", tt.want)
			case len(problemsContaining(r.problems, tt.want)) == 0:
				t.Errorf("problems:\n%s\nwant one containing %q", strings.Join(r.problems, "\n"), tt.want)
			}
		})
	}
}
