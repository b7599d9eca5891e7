package check

import (
	"fmt"
	"slices"
	"strings"
)

// A rule is one named check of the rendered objects. It returns one
// sentence per problem.
type rule struct {
	name string
	run  func(o *Objects, want Want) []string
}

// rules are every check, run in this order.
var rules = []rule{
	{"components", checkComponents},
	{"pod security", checkPodSecurity},
	{"resources", checkResources},
	{"images", checkImages},
	{"probes", checkProbes},
	{"availability", checkAvailability},
	{"keepers", checkKeepers},
	{"identities", checkIdentities},
	{"database", checkDatabase},
	{"network policies", checkNetworkPolicies},
	{"environment", checkEnvironment},
	{"service monitors", checkServiceMonitors},
}

// Problems runs every rule and returns their problems, each prefixed by
// its rule's name.
func Problems(o *Objects, want Want) []string {
	var out []string
	for _, r := range rules {
		for _, p := range r.run(o, want) {
			out = append(out, r.name+": "+p)
		}
	}
	return out
}

// checkComponents wants exactly one Nexus Deployment, one Keeper
// StatefulSet and one migration Job, each with one container, and nothing
// else that runs pods.
func checkComponents(o *Objects, _ Want) []string {
	var out []string
	count := map[string][]string{}
	for _, w := range o.workloads() {
		count[w.component] = append(count[w.component], w.String())
		if w.container() == nil {
			out = append(out, fmt.Sprintf("%s: want one container, got %d", w, len(w.pod.Spec.Containers)))
		}
		if len(w.pod.Spec.InitContainers) > 0 {
			out = append(out, fmt.Sprintf("%s: has init containers, which the checks do not cover", w))
		}
	}
	want := map[string]string{"nexus": "Deployment", "keeper": "StatefulSet", "migrate": "Job"}
	for c, kind := range want {
		if got := count[c]; len(got) != 1 || !strings.HasPrefix(got[0], kind+" ") {
			out = append(out, fmt.Sprintf("component %s: want one %s, got %v", c, kind, got))
		}
	}
	for c, got := range count {
		if _, ok := want[c]; !ok {
			out = append(out, fmt.Sprintf("unexpected component %q: %v", c, got))
		}
	}
	slices.Sort(out)
	return out
}
