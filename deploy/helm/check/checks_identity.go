package check

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// namespaceLabel is the label Kubernetes gives every namespace, its name.
const namespaceLabel = "kubernetes.io/metadata.name"

// issuedID is the SPIFFE ID the SPIRE Controller Manager would issue to a
// pod, or why it would issue none.
type issuedID struct {
	id  spiffeid.ID
	err error
}

// issue renders, as the SPIRE Controller Manager does, the SPIFFE ID of
// every ClusterSPIFFEID that selects a pod of w called pod: its namespace
// must match the namespace selector and its labels the pod selector, and
// its service account the k8s:sa workload selector if there is one.
func issue(o *Objects, w workload, pod string, want Want) ([]issuedID, []string) {
	var ids []issuedID
	var problems []string
	ns := labels.Set{namespaceLabel: want.Release.Namespace}
	meta := &metav1.ObjectMeta{Name: pod, Namespace: want.Release.Namespace, Labels: w.pod.Labels}
	for _, c := range o.ClusterSPIFFEIDs {
		s := c.Spec
		if !matches(s.NamespaceSelector, ns) || !matches(s.PodSelector, w.podLabels()) {
			continue
		}
		sa := w.pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		admits := true
		for _, t := range s.WorkloadSelectorTemplates {
			if v, ok := strings.CutPrefix(t, "k8s:sa:"); ok && v != sa {
				admits = false
			}
		}
		if !admits {
			continue
		}
		if s.Admin || s.Downstream || len(s.FederatesWith) > 0 {
			problems = append(problems, fmt.Sprintf("ClusterSPIFFEID %s sets admin, downstream or federatesWith", c.Name))
		}
		ids = append(ids, renderID(s.SPIFFEIDTemplate, meta, w, want.TrustDomain))
	}
	return ids, problems
}

// renderID executes a spiffeIDTemplate with the data the SPIRE
// Controller Manager gives it, and parses the result.
func renderID(tmpl string, meta *metav1.ObjectMeta, w workload, td string) issuedID {
	t, err := template.New("spiffeIDTemplate").Parse(tmpl)
	if err != nil {
		return issuedID{err: err}
	}
	var b bytes.Buffer
	err = t.Execute(&b, &SPIFFEIDTemplateData{
		TrustDomain: td, ClusterName: "cluster", ClusterDomain: "cluster.local",
		PodMeta: meta, PodSpec: &w.pod.Spec,
	})
	if err != nil {
		return issuedID{err: err}
	}
	id, err := spiffeid.FromString(b.String())
	return issuedID{id: id, err: err}
}

// checkIdentities wants each pod of Nexus and of the Keepers to get
// exactly one SPIFFE ID, in the trust domain, and the one the other
// programs expect of it: Nexus spike/nexus (what Keepers admit,
// SPIKE_KEEPER_NEXUS_ID), each Keeper a spike/keeper/<name> of its own;
// the migration none, and no ID to be given to pods of another component.
func checkIdentities(o *Objects, want Want) []string {
	var out []string
	td, err := spiffeid.TrustDomainFromString(want.TrustDomain)
	if err != nil {
		return []string{fmt.Sprintf("trust domain %q: %v", want.TrustDomain, err)}
	}
	ws := o.workloads()
	for _, w := range ws {
		if c := w.container(); c != nil && w.component != "migrate" {
			if got, _ := env(c, "SPIKE_TRUST_DOMAIN"); got != td.Name() {
				out = append(out, fmt.Sprintf("%s: SPIKE_TRUST_DOMAIN is %q, want %q", w, got, td.Name()))
			}
		}
	}
	for _, sa := range o.ServiceAccounts {
		if v, ok := sa.Annotations["spike.dev/trust-domain"]; ok && v != td.Name() {
			out = append(out, fmt.Sprintf("ServiceAccount %s: Pilot's trust domain is %q, want %q", sa.Name, v, td.Name()))
		}
	}
	nexusID := spiffeid.RequireFromSegments(td, "spike", "nexus")
	for _, k := range byComponent(ws, "keeper") {
		if c := k.container(); c != nil {
			if got, _ := env(c, "SPIKE_KEEPER_NEXUS_ID"); got != nexusID.String() {
				out = append(out, fmt.Sprintf("%s: SPIKE_KEEPER_NEXUS_ID is %q, want %s", k, got, nexusID))
			}
		}
	}
	keeperIDs := map[string]string{}
	for _, w := range ws {
		for _, pod := range w.pods {
			ids, problems := issue(o, w, pod, want)
			out = append(out, problems...)
			if w.component == "migrate" {
				if len(ids) > 0 {
					out = append(out, fmt.Sprintf("%s: the migration gets a SPIFFE ID (%v): it needs none", w, ids[0].id))
				}
				continue
			}
			if len(ids) != 1 {
				out = append(out, fmt.Sprintf("%s: pod %s would get %d SPIFFE IDs, want 1", w, pod, len(ids)))
				continue
			}
			id := ids[0]
			switch {
			case id.err != nil:
				out = append(out, fmt.Sprintf("%s: pod %s: the SPIFFE ID template fails: %v", w, pod, id.err))
			case !id.id.MemberOf(td):
				out = append(out, fmt.Sprintf("%s: pod %s would get %s, outside the trust domain %s", w, pod, id.id, td))
			case w.component == "nexus" && id.id != nexusID:
				out = append(out, fmt.Sprintf("%s: pod %s would get %s, but Keepers admit only %s", w, pod, id.id, nexusID))
			case w.component == "keeper" && !isKeeperID(td, id.id):
				out = append(out, fmt.Sprintf("%s: pod %s would get %s, not a Keeper ID spiffe://%s/spike/keeper/<name>", w, pod, id.id, td))
			case w.component == "keeper":
				if other, dup := keeperIDs[id.id.String()]; dup {
					out = append(out, fmt.Sprintf("Keepers %s and %s would share the ID %s", other, pod, id.id))
				}
				keeperIDs[id.id.String()] = pod
			}
		}
	}
	for _, c := range o.ClusterSPIFFEIDs {
		if saOf(c.Spec.WorkloadSelectorTemplates) == "" {
			out = append(out, fmt.Sprintf("ClusterSPIFFEID %s does not require a service account (workload selector k8s:sa:<name>): any pod with its labels would get the ID", c.Name))
		}
		var selected []string
		for _, w := range ws {
			if matches(c.Spec.PodSelector, w.podLabels()) {
				selected = append(selected, w.String())
			}
		}
		if len(selected) > 1 {
			slices.Sort(selected)
			out = append(out, fmt.Sprintf("ClusterSPIFFEID %s selects the pods of %v: one component each", c.Name, selected))
		}
	}
	out = append(out, checkPilotIdentity(o, want, td)...)
	slices.Sort(out)
	return slices.Compact(out)
}

// isKeeperID is shared/identity.IsKeeper: spike/keeper/<one segment>.
func isKeeperID(td spiffeid.TrustDomain, id spiffeid.ID) bool {
	name, ok := strings.CutPrefix(id.Path(), "/spike/keeper/")
	return ok && id.MemberOf(td) && name != "" && !strings.Contains(name, "/")
}

// checkPilotIdentity wants a Pilot ClusterSPIFFEID, when there is one, to
// issue an ID that Nexus takes for an admin's.
func checkPilotIdentity(o *Objects, want Want, td spiffeid.TrustDomain) []string {
	var out []string
	nexus := byComponent(o.workloads(), "nexus")
	if len(nexus) != 1 || nexus[0].container() == nil {
		return nil
	}
	admins := []string{spiffeid.RequireFromSegments(td, "spike", "pilot").String()}
	if v, ok := env(nexus[0].container(), "SPIKE_ADMIN_IDS"); ok {
		admins = splitList(v)
	}
	for _, c := range o.ClusterSPIFFEIDs {
		if c.Spec.PodSelector == nil || c.Spec.PodSelector.MatchLabels[componentLabel] != "pilot" {
			continue
		}
		pilot := workload{component: "pilot", kind: "Pod", name: "pilot", pod: podWithLabels(c.Spec.PodSelector.MatchLabels, saOf(c.Spec.WorkloadSelectorTemplates))}
		id := renderID(c.Spec.SPIFFEIDTemplate, &metav1.ObjectMeta{Name: "pilot", Namespace: want.Release.Namespace}, pilot, want.TrustDomain)
		if id.err != nil || !slices.Contains(admins, id.id.String()) {
			out = append(out, fmt.Sprintf("ClusterSPIFFEID %s issues %v (%v), which is not an admin ID of Nexus %v", c.Name, id.id, id.err, admins))
		}
		for _, w := range o.workloads() {
			if matches(c.Spec.PodSelector, w.podLabels()) {
				out = append(out, fmt.Sprintf("ClusterSPIFFEID %s (Pilot) selects %s", c.Name, w))
			}
		}
	}
	return out
}
