package check

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestPilotPod runs deploy/helm/pilot.sh against a stand-in kubectl that
// answers with the rendered Pilot service account's annotations, decodes
// the pod it would create strictly, and checks that the release's
// ClusterSPIFFEIDs give that pod exactly the Pilot ID and that it calls
// the release's Nexus Service.
func TestPilotPod(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "values-external-db.yaml"} {
		r, err := renderValues(t, profile(t, p), Release{"prod", "secrets"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var sa *corev1.ServiceAccount
		for _, s := range r.objects.ServiceAccounts {
			if strings.HasSuffix(s.Name, "-pilot") {
				sa = s
			}
		}
		if sa == nil {
			t.Fatal("no Pilot service account")
		}
		dir := t.TempDir()
		var answers strings.Builder
		for k, v := range sa.Annotations {
			fmt.Fprintf(&answers, "  *%s*) printf '%%s' '%s';;\n", strings.TrimPrefix(k, "spike.dev/"), v)
		}
		fake := "#!/usr/bin/env bash\nif [[ $3 == get ]]; then\n case \"$7\" in\n" + answers.String() + "  *) ;;\n esac\n exit 0\nfi\n" +
			"for a in \"$@\"; do case $a in --overrides=*) printf '%s' \"${a#--overrides=}\" > " + filepath.Join(dir, "pod.json") + ";; esac; done\n"
		kubectl := filepath.Join(dir, "kubectl")
		if err := os.WriteFile(kubectl, []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), "bash", "../pilot.sh", "operator", "status")
		cmd.Env = append(os.Environ(), "KUBECTL="+kubectl, "NAMESPACE=secrets", "RELEASE=prod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pilot.sh: %v\n%s", err, out)
		}
		data, err := os.ReadFile(filepath.Join(dir, "pod.json"))
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if _, err := decodeInto(Document{Template: "pilot.sh", YAML: string(data)}, []*corev1.Pod{}); err != nil {
			t.Fatalf("pilot.sh's pod: %v", err)
		}
		if err := yaml.Unmarshal(data, &pod); err != nil {
			t.Fatal(err)
		}
		w := workload{component: "pilot", kind: "Pod", name: "pilot", pod: &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}, pods: []string{"spike-pilot-1"}}
		want := Want{Release: Release{"prod", "secrets"}, TrustDomain: "spike.local", ClusterDomain: "cluster.local"}
		ids, problems := issue(r.objects, w, "spike-pilot-1", want)
		if len(problems) > 0 || len(ids) != 1 || ids[0].err != nil || ids[0].id.String() != "spiffe://spike.local/spike/pilot" {
			t.Errorf("profile %q: the Pilot pod would get %v (%v), want spiffe://spike.local/spike/pilot", p, ids, problems)
		}
		c := pod.Spec.Containers[0]
		if got, _ := env(&c, "SPIKE_NEXUS_URL"); got != "https://prod-spike-nexus.secrets.svc:8553" || findService(r.objects, "prod-spike-nexus") == nil {
			t.Errorf("profile %q: Pilot calls %q", p, got)
		}
	}
}
