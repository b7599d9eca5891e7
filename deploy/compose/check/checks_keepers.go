package check

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// checkKeepers: Nexus lists every Keeper of the stack once
// (SPIKE_KEEPER_URLS, or SPIKE_KEEPER_URL for one); each Keeper lists
// every other one as its peer (SPIKE_KEEPER_PEERS), and never itself; and
// with several Keepers, Nexus waits for none of them to be healthy, so
// that none alone can keep it from starting.
// Which IDs the Keepers get is checkIdentities' part.
func checkKeepers(s *stack) []string {
	var out []string
	keepers := s.servicesRunning("spike-keeper")
	for _, n := range s.servicesRunning("spike-nexus") {
		if !isMigrate(s, n) {
			out = append(out, s.checkNexusKeepers(n, keepers)...)
		}
	}
	for _, k := range keepers {
		out = append(out, s.checkPeers(k, keepers)...)
	}
	return out
}

// checkNexusKeepers checks the Keepers a Nexus service calls.
func (s *stack) checkNexusKeepers(n types.ServiceConfig, keepers []types.ServiceConfig) []string {
	list, single := envOr(n, "SPIKE_KEEPER_URLS", ""), envOr(n, "SPIKE_KEEPER_URL", "")
	name, value := "SPIKE_KEEPER_URLS", list
	switch {
	case list != "" && single != "":
		return []string{fmt.Sprintf("service %s sets both SPIKE_KEEPER_URL and SPIKE_KEEPER_URLS, which Nexus refuses: list every Keeper in SPIKE_KEEPER_URLS", n.Name)}
	case list == "" && single == "":
		return []string{fmt.Sprintf("service %s sets neither SPIKE_KEEPER_URLS nor SPIKE_KEEPER_URL: the default points at its own container", n.Name)}
	case single != "":
		name, value = "SPIKE_KEEPER_URL", single
	}
	listed, out := s.checkKeeperList(n, name, value)
	if pinned := envOr(n, "SPIKE_KEEPER_ID", ""); pinned != "" && len(strings.Split(value, ",")) > 1 {
		out = append(out, fmt.Sprintf("service %s sets SPIKE_KEEPER_ID=%s, one Keeper's ID, but %s names several Keepers, which Nexus refuses: leave SPIKE_KEEPER_ID unset to take any spike/keeper/<name> ID", n.Name, pinned, name))
	}
	for _, k := range keepers {
		if !listed[k.Name] {
			out = append(out, fmt.Sprintf("service %s: %s does not list %s, which runs spike-keeper: Nexus would never call it nor fail over to it", n.Name, name, k.Name))
		}
		if dep, ok := n.DependsOn[k.Name]; ok && dep.Condition == types.ServiceConditionHealthy && len(keepers) > 1 {
			out = append(out, fmt.Sprintf("service %s waits for %s to be healthy: one Keeper that never gets healthy would keep Nexus down, though the other Keepers serve; wait with condition service_started", n.Name, k.Name))
		}
	}
	return out
}

// checkPeers checks a Keeper service's SPIKE_KEEPER_PEERS against the
// other Keepers of the stack.
func (s *stack) checkPeers(k types.ServiceConfig, keepers []types.ServiceConfig) []string {
	listed, out := map[string]bool{}, []string(nil)
	if v := envOr(k, "SPIKE_KEEPER_PEERS", ""); v != "" {
		listed, out = s.checkKeeperList(k, "SPIKE_KEEPER_PEERS", v)
		for _, f := range strings.Split(v, ",") {
			// Keeper takes scheme://host:port and nothing more.
			if u, err := url.Parse(strings.TrimSpace(f)); err == nil && u.Path != "" && u.Path != "/" {
				out = append(out, fmt.Sprintf("service %s: SPIKE_KEEPER_PEERS lists %s, with a path, which Keeper refuses: https://host:port only", k.Name, f))
			}
		}
	}
	if listed[k.Name] {
		out = append(out, fmt.Sprintf("service %s: SPIKE_KEEPER_PEERS lists %s itself: its peers are the other Keepers", k.Name, k.Name))
	}
	for _, other := range keepers {
		if other.Name != k.Name && !listed[other.Name] {
			out = append(out, fmt.Sprintf("service %s: SPIKE_KEEPER_PEERS does not list %s: after a restart, %s could not take the root key from it", k.Name, other.Name, k.Name))
		}
	}
	return out
}

// checkKeeperList checks a comma-separated list of Keeper URLs: each names
// a service running spike-keeper, at its API port, and no service twice.
// It returns the services named.
func (s *stack) checkKeeperList(svc types.ServiceConfig, name, value string) (map[string]bool, []string) {
	var out []string
	listed := map[string]bool{}
	for _, f := range strings.Split(value, ",") {
		f = strings.TrimSpace(f)
		if p := s.checkURL(svc, name, f, "spike-keeper"); len(p) > 0 {
			out = append(out, p...)
			continue
		}
		u, _ := url.Parse(f) // checkURL parsed it
		if listed[u.Hostname()] {
			out = append(out, fmt.Sprintf("service %s: %s names %s twice", svc.Name, name, u.Hostname()))
		}
		listed[u.Hostname()] = true
	}
	return listed, out
}

// isKeeperID reports whether id is a Keeper's SPIFFE ID in trust domain
// td, spiffe://td/spike/keeper/<name>: the IDs Nexus takes when
// SPIKE_KEEPER_ID is unset and Keepers take from their peers
// (shared/identity.IsKeeper).
func isKeeperID(td, id string) bool {
	name, ok := strings.CutPrefix(id, "spiffe://"+td+"/"+keeperIDPrefix)
	return ok && name != "" && !strings.Contains(name, "/")
}

// startsWithoutHealth reports whether svc may wait only for target to
// start though target has a health check: Nexus for a Keeper when there
// are several (checkKeepers says why).
func (s *stack) startsWithoutHealth(svc, target types.ServiceConfig) bool {
	p, tp := s.program(svc), s.program(target)
	return p != nil && tp != nil && p.name == "spike-nexus" && tp.name == "spike-keeper" && len(s.servicesRunning("spike-keeper")) > 1
}
