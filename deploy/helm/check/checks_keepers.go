package check

import (
	"fmt"
	"net/url"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxKeepers is how many Keepers Nexus (SPIKE_KEEPER_URLS) and a Keeper
// (SPIKE_KEEPER_PEERS) accept.
const maxKeepers = 16

// checkAvailability wants a PodDisruptionBudget for Nexus and the Keepers,
// Nexus spread over a topology and rolled without losing a ready pod, and
// the Keepers on different nodes, without volumes (keys in memory only),
// started in parallel and replaced one at a time.
func checkAvailability(o *Objects, _ Want) []string {
	var out []string
	for _, w := range o.workloads() {
		if w.component == "migrate" {
			continue
		}
		n := 0
		for _, pdb := range o.PDBs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err == nil && sel.Matches(w.podLabels()) {
				n++
				if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
					out = append(out, fmt.Sprintf("%s: PodDisruptionBudget %s does not allow exactly one pod down", w, pdb.Name))
				}
			}
		}
		if n != 1 {
			out = append(out, fmt.Sprintf("%s: %d PodDisruptionBudgets select its pods, want 1", w, n))
		}
	}
	for _, d := range o.Deployments {
		if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
			out = append(out, fmt.Sprintf("Deployment %s has no topology spread constraint", d.Name))
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			out = append(out, fmt.Sprintf("Deployment %s: a rolling update may take a ready pod away before its replacement is ready (maxUnavailable is not 0)", d.Name))
		}
	}
	for _, s := range o.StatefulSets {
		if len(s.Spec.VolumeClaimTemplates) > 0 {
			out = append(out, fmt.Sprintf("StatefulSet %s has volume claims: Keepers keep keys in memory only", s.Name))
		}
		if s.Spec.PodManagementPolicy != "Parallel" {
			out = append(out, fmt.Sprintf("StatefulSet %s: podManagementPolicy is not Parallel: a sealed (unready) Keeper would hold back the start of the others", s.Name))
		}
		if s.Spec.UpdateStrategy.Type != "RollingUpdate" {
			out = append(out, fmt.Sprintf("StatefulSet %s is not updated one Keeper at a time (RollingUpdate)", s.Name))
		}
		a := s.Spec.Template.Spec.Affinity
		if a == nil || a.PodAntiAffinity == nil || !antiAffinitySelects(a.PodAntiAffinity, s.Spec.Template.Labels) {
			out = append(out, fmt.Sprintf("StatefulSet %s: no pod anti-affinity keeps its Keepers apart", s.Name))
		}
	}
	return out
}

// checkKeepers wants a headless Service publishing every Keeper by name
// (also when not ready: a sealed Keeper must be reachable), Nexus to list
// every Keeper pod by that name and no single Keeper ID, and each Keeper to
// list every other Keeper as its peer.
func checkKeepers(o *Objects, want Want) []string {
	var out []string
	keepers := byComponent(o.workloads(), "keeper")
	nexus := byComponent(o.workloads(), "nexus")
	if len(keepers) != 1 || len(nexus) != 1 || len(o.StatefulSets) != 1 {
		return []string{"want one Keeper StatefulSet and one Nexus Deployment"}
	}
	sts := o.StatefulSets[0]
	k := keepers[0]
	svc := findService(o, sts.Spec.ServiceName)
	if svc == nil {
		out = append(out, fmt.Sprintf("StatefulSet %s: its service %q does not exist", sts.Name, sts.Spec.ServiceName))
	} else {
		if svc.Spec.ClusterIP != "None" {
			out = append(out, fmt.Sprintf("Service %s is not headless: Keepers get no names of their own", svc.Name))
		}
		if !svc.Spec.PublishNotReadyAddresses {
			out = append(out, fmt.Sprintf("Service %s does not publish unready addresses: sealed Keepers could not be reached to unseal them", svc.Name))
		}
		if !selectsAll(svc.Spec.Selector, k.podLabels()) {
			out = append(out, fmt.Sprintf("Service %s does not select the Keeper pods", svc.Name))
		}
	}
	if len(k.pods) > maxKeepers {
		out = append(out, fmt.Sprintf("%d Keepers: Nexus and Keepers accept at most %d", len(k.pods), maxKeepers))
	}
	apiPort := int32(0)
	if c := k.container(); c != nil {
		v, _ := env(c, "SPIKE_KEEPER_LISTEN")
		_, apiPort, _ = listenPort(v)
	}
	urls := map[string]string{} // pod name -> URL
	for _, pod := range k.pods {
		urls[pod] = fmt.Sprintf("https://%s.%s.%s.svc.%s:%d", pod, sts.Spec.ServiceName, want.Release.Namespace, want.ClusterDomain, apiPort)
	}
	all := sortedValues(urls)

	nc := nexus[0].container()
	if nc == nil {
		return out
	}
	got, _ := env(nc, "SPIKE_KEEPER_URLS")
	if g := sorted(splitList(got)); !slices.Equal(g, all) {
		out = append(out, fmt.Sprintf("Nexus's SPIKE_KEEPER_URLS is %v, want every Keeper pod: %v", g, all))
	}
	for _, v := range []string{"SPIKE_KEEPER_URL", "SPIKE_KEEPER_ID"} {
		if _, ok := env(nc, v); ok {
			out = append(out, fmt.Sprintf("Nexus sets %s: with several Keepers it must accept any spike/keeper/<name> ID", v))
		}
	}
	kc := k.container()
	if kc == nil {
		return out
	}
	peersVar, _ := env(kc, "SPIKE_KEEPER_PEERS")
	peers := splitList(peersVar)
	for _, p := range peers {
		if u, err := url.Parse(p); err != nil || u.Scheme != "https" || !slices.Contains(all, p) {
			out = append(out, fmt.Sprintf("SPIKE_KEEPER_PEERS lists %q, which is not one of the Keepers %v", p, all))
		}
	}
	// One pod template serves every Keeper: each pod gets the same list,
	// which must name every other Keeper (itself being harmless).
	for _, pod := range k.pods {
		for other, u := range urls {
			if other != pod && !slices.Contains(peers, u) {
				out = append(out, fmt.Sprintf("Keeper %s: SPIKE_KEEPER_PEERS misses its peer %s", pod, u))
			}
		}
	}
	slices.Sort(out)
	return out
}
