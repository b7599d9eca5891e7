package check

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// An edge is one kind of connection a NetworkPolicy admits: into or out of
// a component's pods, from or to a peer, on a protocol and port.
type edge struct {
	dir       string // "ingress" or "egress"
	component string
	peer      string // a component, "postgres", "any" (no peer: everyone) or the peer's JSON
	port      string // "TCP/8443"; "all" when the rule names no port
}

func (e edge) String() string {
	return fmt.Sprintf("%s %s %s %s %s", e.component, e.dir, map[string]string{"ingress": "from", "egress": "to"}[e.dir], e.peer, e.port)
}

// edges flattens the policies that select a component's pods.
func edges(o *Objects, w workload) (out []edge, policyTypes map[string]bool) {
	policyTypes = map[string]bool{}
	names := componentLabels(o)
	for _, np := range o.NetworkPolicies {
		if !matches(&np.Spec.PodSelector, w.podLabels()) {
			continue
		}
		for _, t := range np.Spec.PolicyTypes {
			policyTypes[strings.ToLower(string(t))] = true
		}
		for _, r := range np.Spec.Ingress {
			out = append(out, ruleEdges("ingress", w.component, r.From, r.Ports, names)...)
		}
		for _, r := range np.Spec.Egress {
			out = append(out, ruleEdges("egress", w.component, r.To, r.Ports, names)...)
		}
	}
	return out, policyTypes
}

// ruleEdges flattens one rule.
func ruleEdges(dir, component string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, names map[string]string) []edge {
	var ps, pts []string
	for _, p := range peers {
		ps = append(ps, peerName(p, names))
	}
	if len(ps) == 0 {
		ps = []string{"any"}
	}
	for _, p := range ports {
		proto := "TCP"
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.Port == nil || p.EndPort != nil {
			pts = append(pts, proto+"/all")
			continue
		}
		pts = append(pts, proto+"/"+p.Port.String())
	}
	if len(pts) == 0 {
		pts = []string{"all"}
	}
	var out []edge
	for _, p := range ps {
		for _, pt := range pts {
			out = append(out, edge{dir, component, p, pt})
		}
	}
	return out
}

// componentLabels maps the JSON of each component's pod selector labels
// (and of a CloudNativePG cluster's) to its name.
func componentLabels(o *Objects) map[string]string {
	names := map[string]string{}
	for _, w := range o.workloads() {
		names[selectorKey(map[string]string{
			"app.kubernetes.io/name":      w.pod.Labels["app.kubernetes.io/name"],
			"app.kubernetes.io/instance":  w.pod.Labels["app.kubernetes.io/instance"],
			"app.kubernetes.io/component": w.component,
		})] = w.component
	}
	for _, c := range o.PostgresClusters {
		names[selectorKey(map[string]string{"cnpg.io/cluster": c.Name})] = "postgres"
	}
	return names
}

func selectorKey(m map[string]string) string {
	b, _ := json.Marshal(m) // sorted keys
	return string(b)
}

// peerName names a peer: a component when it is a pod selector of this
// namespace that selects exactly a component's labels, else its JSON.
func peerName(p networkingv1.NetworkPolicyPeer, names map[string]string) string {
	if p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil && len(p.PodSelector.MatchExpressions) == 0 {
		if n, ok := names[selectorKey(p.PodSelector.MatchLabels)]; ok {
			return n
		}
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// allowed is one connection the policies must or may admit. A peer "*"
// stands for any peer named in the rule (not "any", which is everyone).
type allowed struct {
	dir, component, peer, port string
	required                   bool
}

// checkNetworkPolicies wants the pods of Nexus, the Keepers and the
// migration each selected by policies of both types that admit exactly:
// workloads -> Nexus's API; Nexus -> Keepers, PostgreSQL, DNS; Keepers ->
// Keepers, DNS; migration -> PostgreSQL, DNS; and Prometheus -> the ops
// ports when ServiceMonitors exist. Nothing else, no rule without ports.
func checkNetworkPolicies(o *Objects, _ Want) []string {
	var out []string
	ws := o.workloads()
	nexus := byComponent(ws, "nexus")
	if len(nexus) != 1 {
		return nil
	}
	dbPeer, dbPort := "*", "TCP/5432"
	if serving, _ := connection(nexus[0], "SPIKE_DATABASE_URL"); serving.url != nil {
		dbPort = "TCP/" + serving.url.Port()
	}
	if len(o.PostgresClusters) > 0 {
		dbPeer = "postgres"
	}
	monitored := len(o.ServiceMonitors) > 0
	rules := []allowed{
		{"ingress", "nexus", "*", "TCP/8553", true},
		{"ingress", "nexus", "*", "TCP/8554", monitored},
		{"egress", "nexus", "keeper", "TCP/8443", true},
		{"egress", "nexus", dbPeer, dbPort, true},
		{"ingress", "keeper", "nexus", "TCP/8443", true},
		{"ingress", "keeper", "keeper", "TCP/8443", true},
		{"ingress", "keeper", "*", "TCP/8444", monitored},
		{"egress", "keeper", "keeper", "TCP/8443", true},
		{"egress", "migrate", dbPeer, dbPort, true},
	}
	for _, c := range []string{"nexus", "keeper", "migrate"} {
		rules = append(rules, allowed{"egress", c, "*", "UDP/53", true}, allowed{"egress", c, "*", "TCP/53", true})
	}
	seen := map[allowed]bool{}
	for _, w := range ws {
		es, types := edges(o, w)
		if !types["ingress"] || !types["egress"] {
			out = append(out, fmt.Sprintf("%s: no NetworkPolicy restricts both its ingress and its egress", w))
			continue
		}
		for _, e := range es {
			i := slices.IndexFunc(rules, func(r allowed) bool {
				return r.dir == e.dir && r.component == e.component && r.port == e.port &&
					(r.peer == e.peer || r.peer == "*" && e.peer != "any" && !isComponent(e.peer))
			})
			if i < 0 || !rules[i].required && !monitored {
				out = append(out, "admits "+e.String())
				continue
			}
			seen[rules[i]] = true
		}
	}
	for _, r := range rules {
		if r.required && !seen[r] {
			out = append(out, fmt.Sprintf("does not admit %s %s %s %s", r.component, r.dir, r.peer, r.port))
		}
	}
	for _, c := range o.PostgresClusters {
		if !ingressRestricted(o, map[string]string{"cnpg.io/cluster": c.Name}) {
			out = append(out, fmt.Sprintf("PostgreSQL cluster %s: no NetworkPolicy restricts who reaches its pods", c.Name))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ingressRestricted reports whether a NetworkPolicy of Ingress type selects
// pods labelled labels and admits only listed peers (no rule without a
// peer, which would admit everyone).
func ingressRestricted(o *Objects, labels map[string]string) bool {
	for _, np := range o.NetworkPolicies {
		sel := np.Spec.PodSelector.MatchLabels
		if len(sel) == 0 || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		match := true
		for k, v := range sel {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		open := false
		for _, r := range np.Spec.Ingress {
			open = open || len(r.From) == 0
		}
		if !open {
			return true
		}
	}
	return false
}

// isComponent reports whether a peer name is one of the chart's pods.
func isComponent(peer string) bool {
	return slices.Contains([]string{"nexus", "keeper", "migrate", "postgres"}, peer)
}
