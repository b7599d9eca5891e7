package check

import (
	"strings"
	"testing"
)

// TestBrokenTemplatesCaught breaks the chart's templates one way at a
// time and expects a rule (or strict decoding) to say so: a rule that
// passes on a broken chart checks nothing.
func TestBrokenTemplatesCaught(t *testing.T) {
	t.Parallel()
	const (
		helpers = "templates/_helpers.tpl"
		nexus   = "templates/nexus-deployment.yaml"
		keeper  = "templates/keeper-statefulset.yaml"
		keepSvc = "templates/keeper-service.yaml"
		nexSvc  = "templates/nexus-service.yaml"
		ids     = "templates/clusterspiffeids.yaml"
		job     = "templates/migrate-job.yaml"
		netpol  = "templates/networkpolicies.yaml"
		db      = "templates/postgres-cluster.yaml"
		sm      = "templates/servicemonitor.yaml"
	)
	tests := []struct {
		name     string
		file     string
		old, new string // old must occur exactly once in file
		profile  string
		want     string // the render or decode error, or a problem, contains this
	}{
		{"keeper ready when alive", keeper,
			"path: /readyz", "path: /healthz", "",
			"probes: StatefulSet spike-keeper: the readiness probe asks /healthz, want /readyz"},
		{"nexus ops on loopback", nexus,
			`value: "0.0.0.0:8554"`, `value: "127.0.0.1:8554"`, "",
			`probes: Deployment spike-nexus: SPIKE_NEXUS_OPS_LISTEN="127.0.0.1:8554" listens on loopback only`},
		{"nexus probed on the API port", nexus,
			"path: /readyz\n              port: ops", "path: /readyz\n              port: api", "",
			"probes: Deployment spike-nexus: the readiness probe is on port api, not the ops listener's 8554"},
		{"writable root filesystem", helpers,
			"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "",
			"pod security: Deployment spike-nexus: container nexus: readOnlyRootFilesystem is not true"},
		{"privilege escalation", helpers,
			"allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "",
			"pod security: Job spike-migrate: container migrate: allowPrivilegeEscalation is not false"},
		{"runs as root", helpers,
			"runAsUser: {{ . }}", "runAsUser: 0", "",
			"pod security: StatefulSet spike-keeper: the pod's runAsUser is not set to a non-root user"},
		{"capabilities kept", helpers,
			"drop: [ALL]", "drop: [NET_RAW]", "",
			"pod security: StatefulSet spike-keeper: container keeper does not drop ALL capabilities"},
		{"capability added to Nexus", nexus,
			`(list . (list))`, `(list . (list "NET_ADMIN"))`, "",
			"pod security: Deployment spike-nexus: container nexus adds capability NET_ADMIN"},
		{"service account token mounted", nexus,
			"automountServiceAccountToken: false\n      enableServiceLinks", "automountServiceAccountToken: true\n      enableServiceLinks", "",
			"pod security: Deployment spike-nexus: automountServiceAccountToken is not false"},
		{"writable volume", nexus,
			"mountPath: /etc/spike/db-ca\n              readOnly: true", "mountPath: /etc/spike/db-ca", "",
			"pod security: Deployment spike-nexus: container nexus mounts db-ca writable"},
		{"no memory limit", keeper,
			"{{- toYaml .Values.keeper.resources | nindent 12 }}", "{{- toYaml .Values.keeper.resources.requests | nindent 14 | printf \"requests:%s\" | nindent 12 }}", "",
			"resources: StatefulSet spike-keeper: container keeper has no memory limit"},
		{"image by tag", helpers,
			"{{ .repository }}@{{ .digest }}", "{{ .repository }}:latest", "",
			`images: Deployment spike-nexus: image "registry.example.com/spike/nexus:latest" is not pinned by digest`},
		{"pilot by tag", "templates/pilot-serviceaccount.yaml",
			"spike.dev/pilot-image: {{ include \"spike.image\" .Values.images.pilot }}", "spike.dev/pilot-image: {{ .Values.images.pilot.repository }}:latest", "",
			`images: ServiceAccount spike-pilot: Pilot's image "registry.example.com/spike/pilot:latest" is not pinned by digest`},
		{"pilot in another trust domain", "templates/pilot-serviceaccount.yaml",
			"spike.dev/trust-domain: {{ .Values.trustDomain | quote }}", "spike.dev/trust-domain: other.org", "",
			`identities: ServiceAccount spike-pilot: Pilot's trust domain is "other.org", want "spike.local"`},
		{"migration runs another image", job,
			"{{ include \"spike.image\" .Values.images.nexus }}", "{{ include \"spike.image\" .Values.images.pilot }}", "",
			"images: the migration runs"},
		{"keeper IDs outside spike/keeper", ids,
			`"spike/keeper/{{ .PodMeta.Name }}"`, `"spike/keepers/{{ .PodMeta.Name }}"`, "",
			"identities: StatefulSet spike-keeper: pod spike-keeper-0 would get spiffe://spike.local/spike/keepers/spike-keeper-0, not a Keeper ID"},
		{"one ID for every keeper", ids,
			`"spike/keeper/{{ .PodMeta.Name }}"`, `"spike/keeper/all"`, "",
			"identities: Keepers spike-keeper-0 and spike-keeper-1 would share the ID spiffe://spike.local/spike/keeper/all"},
		{"nexus ID not what Keepers admit", ids,
			`"id" "spike/nexus"`, `"id" "spike/api"`, "",
			"identities: Deployment spike-nexus: pod spike-nexus-5d8f9c7b6-x2x9q would get spiffe://spike.local/spike/api, but Keepers admit only spiffe://spike.local/spike/nexus"},
		{"ID for the wrong service account", ids,
			`"sa" (printf "%s-nexus" $fullname)`, `"sa" "default"`, "",
			"identities: Deployment spike-nexus: pod spike-nexus-5d8f9c7b6-x2x9q would get 0 SPIFFE IDs, want 1"},
		{"ID selector too broad", ids,
			"{{- include \"spike.selectorLabels\" (list $ $c.name) | nindent 6 }}", "app.kubernetes.io/name: spike", "",
			"identities: ClusterSPIFFEID spike-spike-keeper selects the pods of [Deployment spike-nexus Job spike-migrate StatefulSet spike-keeper]"},
		{"ID for any service account", ids,
			"  workloadSelectorTemplates:\n    - {{ printf \"k8s:sa:%s\" $c.sa | quote }}\n", "", "",
			"identities: ClusterSPIFFEID spike-spike-keeper does not require a service account"},
		{"trust domain written out", nexus,
			"value: {{ .Values.trustDomain | quote }}", `value: "spike.local"`, "values-ha.yaml",
			`identities: Deployment spike-nexus: SPIKE_TRUST_DOMAIN is "spike.local", want "example.org"`},
		{"keepers admit another Nexus", keeper,
			`"spiffe://%s/spike/nexus"`, `"spiffe://%s/spike/nexus/0"`, "",
			`identities: StatefulSet spike-keeper: SPIKE_KEEPER_NEXUS_ID is "spiffe://spike.local/spike/nexus/0"`},
		{"nexus misses a keeper", helpers,
			"range $i := until (int .Values.keeper.replicas)", "range $i := until (sub (int .Values.keeper.replicas) 1 | int)", "",
			"keepers: Nexus's SPIKE_KEEPER_URLS is"},
		{"keepers without peers", keeper,
			"value: {{ include \"spike.keeperURLs\" . | quote }}", `value: ""`, "",
			"keepers: Keeper spike-keeper-0: SPIKE_KEEPER_PEERS misses its peer https://spike-keeper-1.spike-keeper.spike.svc.cluster.local:8443"},
		{"sealed keepers unresolvable", keepSvc,
			"publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "",
			"keepers: Service spike-keeper does not publish unready addresses"},
		{"keepers started in order", keeper,
			"podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "",
			"availability: StatefulSet spike-keeper: podManagementPolicy is not Parallel"},
		{"keepers on one node", keeper,
			`(list . "keeper") | nindent 18`, `(list . "nexus") | nindent 18`, "",
			"availability: StatefulSet spike-keeper: no pod anti-affinity keeps its Keepers apart"},
		{"unknown field", keeper,
			"podManagementPolicy: Parallel", "podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicyy: {}", "",
			`spike/templates/keeper-statefulset.yaml: unknown field "spec.persistentVolumeClaimRetentionPolicyy"`},
		{"nexus PDB gone", nexSvc,
			"maxUnavailable: {{ .Values.nexus.maxUnavailable }}\n  selector:\n    matchLabels:\n      {{- include \"spike.selectorLabels\" (list . \"nexus\")", "maxUnavailable: {{ .Values.nexus.maxUnavailable }}\n  selector:\n    matchLabels:\n      {{- include \"spike.selectorLabels\" (list . \"pilot\")", "",
			"availability: Deployment spike-nexus: 0 PodDisruptionBudgets select its pods, want 1"},
		{"migration with Nexus's password", job,
			"name: {{ .Values.database.owner.secret }}", "name: {{ .Values.database.serving.secret }}", "",
			`database: Nexus and the migration take their password from the same Secret "spike-db-nexus"`},
		{"nexus with the owner's role", nexus,
			"(list . .Values.database.serving.role)", "(list . .Values.database.owner.role)", "",
			`database: Nexus serves as "spike", the schema's owner`},
		{"TLS without verification", helpers,
			"?sslmode=verify-full", "?sslmode=require", "",
			`database: Deployment spike-nexus: SPIKE_DATABASE_URL has sslmode="require", want verify-full`},
		{"migration not before upgrades", job,
			"helm.sh/hook: pre-install,pre-upgrade", "helm.sh/hook: pre-install", "values-external-db.yaml",
			"database: the migration Job's helm.sh/hook is [pre-install], want pre-upgrade and pre-install"},
		{"migration before the database exists", job,
			"helm.sh/hook: post-install,pre-upgrade", "helm.sh/hook: pre-install,pre-upgrade", "",
			"want pre-upgrade and post-install"},
		{"another CA than the Cluster's", helpers,
			"secretName: {{ include \"spike.fullname\" . }}-db-ca", "secretName: {{ include \"spike.fullname\" . }}-db-app", "",
			`database: Nexus and the migration verify the server with the CA of Secrets "spike-db-app" and "spike-db-app", not the Cluster's "spike-db-ca"`},
		{"asynchronous replication", db,
			"dataDurability: {{ $db.cloudnativepg.synchronous.dataDurability }}", "dataDurability: preferred", "",
			"database: Cluster spike-db: want synchronous replication"},
		{"nexus role may create roles", db,
			"login: true", "login: true\n        createrole: true", "",
			"database: Cluster spike-db: Nexus's role spike_nexus has a privilege it must not have"},
		{"keepers do not reach each other", netpol,
			"  egress:\n    - to:\n        - podSelector:\n            matchLabels:\n              {{- include \"spike.selectorLabels\" (list . \"keeper\") | nindent 14 }}\n      ports:\n        - {protocol: TCP, port: 8443}\n    {{- include \"spike.dnsEgress\" $np.dns | nindent 4 }}\n---\n# The migration",
			"  egress:\n    {{- include \"spike.dnsEgress\" $np.dns | nindent 4 }}\n---\n# The migration", "",
			"network policies: does not admit keeper egress keeper TCP/8443"},
		{"nexus may go anywhere", netpol,
			"  egress:\n    - to:\n        - podSelector:\n            matchLabels:\n              {{- include \"spike.selectorLabels\" (list . \"keeper\") | nindent 14 }}\n      ports:\n        - {protocol: TCP, port: 8443}\n    - to:",
			"  egress:\n    - {}\n    - to:\n        - podSelector:\n            matchLabels:\n              {{- include \"spike.selectorLabels\" (list . \"keeper\") | nindent 14 }}\n      ports:\n        - {protocol: TCP, port: 8443}\n    - to:", "",
			"network policies: admits nexus egress to any all"},
		{"workloads reach the keepers", netpol,
			"        - podSelector:\n            matchLabels:\n              {{- include \"spike.selectorLabels\" (list . \"keeper\") | nindent 14 }}\n      ports:\n        - {protocol: TCP, port: 8443}\n    {{- if $sm.enabled }}",
			"        - namespaceSelector: {}\n      ports:\n        - {protocol: TCP, port: 8443}\n    {{- if $sm.enabled }}", "",
			`network policies: admits keeper ingress from {"namespaceSelector":{}} TCP/8443`},
		{"metrics open without a ServiceMonitor", netpol,
			"    {{- if $sm.enabled }}\n    - from:\n        {{- toYaml $sm.prometheusPeers | nindent 8 }}\n      ports:\n        - {protocol: TCP, port: 8554}",
			"    - from:\n        {{- toYaml $sm.prometheusPeers | nindent 8 }}\n      ports:\n        - {protocol: TCP, port: 8554}\n    {{- if $sm.enabled }}", "",
			"network policies: admits nexus ingress from"},
		{"misspelt field", helpers,
			"readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "",
			`unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"misspelt CRD field", ids,
			"spiffeIDTemplate:", "spiffeIdTemplate:", "",
			`unknown field "spec.spiffeIdTemplate"`},
		{"misspelt CloudNativePG field", db,
			"enableSuperuserAccess: false", "enableSuperUserAccess: false", "",
			`unknown field "spec.enableSuperUserAccess"`},
		{"service monitor on the API port", sm,
			"- port: ops", "- port: api", "values-ha.yaml",
			"service monitors: ServiceMonitor spike-nexus: endpoint api/metrics is not /metrics on Service spike-nexus's ops port"},
		{"misspelt variable", nexus,
			"name: SPIKE_KEEPER_URLS", "name: SPIKE_KEEPERS_URLS", "",
			"environment: Deployment spike-nexus sets SPIKE_KEEPERS_URLS, which its program does not read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vals := profile(t, tt.profile)
			if tt.name == "trust domain written out" {
				vals["trustDomain"] = "example.org"
			}
			found := false
			edit := func(name string, data []byte) []byte {
				if name != tt.file {
					return data
				}
				if n := strings.Count(string(data), tt.old); n != 1 {
					t.Fatalf("%s: %q occurs %d times, want once", tt.file, tt.old, n)
				}
				found = true
				return []byte(strings.Replace(string(data), tt.old, tt.new, 1))
			}
			r, err := renderValues(t, vals, defaultRelease, edit)
			if !found {
				t.Fatalf("no template %s", tt.file)
			}
			switch {
			case err != nil:
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("refused with\n%v\nwant a message containing %q", err, tt.want)
				}
			case len(problemsContaining(r.problems, tt.want)) == 0:
				t.Errorf("problems:\n%s\nwant one containing %q", strings.Join(r.problems, "\n"), tt.want)
			}
		})
	}
}
