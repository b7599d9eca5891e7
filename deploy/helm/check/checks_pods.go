package check

import (
	"fmt"
	"regexp"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// allowedCapabilities are the capabilities a component may add, every
// other one being dropped: Keeper locks its memory with IPC_LOCK.
var allowedCapabilities = map[string][]corev1.Capability{"keeper": {"IPC_LOCK"}}

// checkPodSecurity wants every pod to run as a non-root user with a
// read-only root filesystem, no privilege escalation, all capabilities
// dropped (but IPC_LOCK for Keeper), the runtime's seccomp profile, no
// host namespaces, no service-account token, and only the volumes SPIKE
// needs: the Workload API socket and Secrets, read-only.
func checkPodSecurity(o *Objects, _ Want) []string {
	var out []string
	for _, sa := range o.ServiceAccounts {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			out = append(out, fmt.Sprintf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name))
		}
	}
	for _, w := range o.workloads() {
		spec := &w.pod.Spec
		bad := func(format string, args ...any) {
			out = append(out, w.String()+": "+fmt.Sprintf(format, args...))
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			bad("automountServiceAccountToken is not false: SPIKE does not call the Kubernetes API")
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			bad("uses a host namespace")
		}
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			bad("the pod's runAsUser is not set to a non-root user")
		}
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			if sc == nil {
				bad("container %s has no securityContext", c.Name)
				continue
			}
			nonRoot := sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
			if !nonRoot {
				bad("container %s: runAsNonRoot is not true", c.Name)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				bad("container %s runs as root", c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				bad("container %s: readOnlyRootFilesystem is not true", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				bad("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				bad("container %s is privileged", c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				bad("container %s does not drop ALL capabilities", c.Name)
			} else {
				for _, add := range sc.Capabilities.Add {
					if !slices.Contains(allowedCapabilities[w.component], add) {
						bad("container %s adds capability %s", c.Name, add)
					}
				}
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				bad("container %s: seccomp profile is not RuntimeDefault", c.Name)
			}
			for _, m := range c.VolumeMounts {
				if !m.ReadOnly {
					bad("container %s mounts %s writable", c.Name, m.Name)
				}
			}
		}
		for _, v := range spec.Volumes {
			switch {
			case v.Secret != nil:
			case v.CSI != nil && v.CSI.Driver == "csi.spiffe.io" && v.CSI.ReadOnly != nil && *v.CSI.ReadOnly:
			case v.HostPath != nil && v.Name == "spire-agent-socket":
			default:
				bad("volume %s is neither a Secret nor the SPIRE agent's socket (read-only csi.spiffe.io, or a hostPath)", v.Name)
			}
		}
	}
	return out
}

// checkResources wants every container to request CPU and memory and to
// be limited in memory.
func checkResources(o *Objects, _ Want) []string {
	var out []string
	for _, w := range o.workloads() {
		for _, c := range w.pod.Spec.Containers {
			r := c.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
				out = append(out, fmt.Sprintf("%s: container %s does not request both cpu and memory", w, c.Name))
			}
			if r.Limits.Memory().IsZero() {
				out = append(out, fmt.Sprintf("%s: container %s has no memory limit", w, c.Name))
			}
		}
	}
	return out
}

// pinned matches an image reference with a digest (a tag may come
// before it).
var pinned = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[a-f0-9]{64}$`)

// checkImages wants every image pinned by digest, and the migration to
// run Nexus's image (the schema it migrates to is the one Nexus embeds).
func checkImages(o *Objects, _ Want) []string {
	var out []string
	images := map[string]string{}
	for _, w := range o.workloads() {
		for _, c := range w.pod.Spec.Containers {
			if !pinned.MatchString(c.Image) {
				out = append(out, fmt.Sprintf("%s: image %q is not pinned by digest (repository[:tag]@sha256:...)", w, c.Image))
			}
			images[w.component] = c.Image
		}
	}
	for _, sa := range o.ServiceAccounts {
		if img, ok := sa.Annotations["spike.dev/pilot-image"]; ok && !pinned.MatchString(img) {
			out = append(out, fmt.Sprintf("ServiceAccount %s: Pilot's image %q is not pinned by digest", sa.Name, img))
		}
	}
	if images["migrate"] != images["nexus"] {
		out = append(out, fmt.Sprintf("the migration runs %q, not Nexus's image %q", images["migrate"], images["nexus"]))
	}
	return out
}

// servers are the listen variables of the programs that serve.
var servers = map[string]struct{ listen, ops string }{
	"nexus":  {"SPIKE_NEXUS_LISTEN", "SPIKE_NEXUS_OPS_LISTEN"},
	"keeper": {"SPIKE_KEEPER_LISTEN", "SPIKE_KEEPER_OPS_LISTEN"},
}

// checkProbes wants Nexus and Keeper to listen beyond loopback (the
// kubelet probes from the node), readiness on /readyz and liveness on
// /healthz of the ops listener, and the API port declared.
func checkProbes(o *Objects, _ Want) []string {
	var out []string
	for _, w := range o.workloads() {
		vars, ok := servers[w.component]
		c := w.container()
		if !ok || c == nil {
			continue
		}
		bad := func(format string, args ...any) {
			out = append(out, w.String()+": "+fmt.Sprintf(format, args...))
		}
		ports := map[string]int32{}
		for _, name := range []string{vars.listen, vars.ops} {
			v, _ := env(c, name)
			host, port, err := listenPort(v)
			if err != nil {
				bad("%s=%q is not a host:port", name, v)
				continue
			}
			if isLoopback(host) {
				bad("%s=%q listens on loopback only: probes and callers come from outside the pod", name, v)
			}
			ports[name] = port
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == port }) {
				bad("%s's port %d is not a declared container port", name, port)
			}
		}
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				bad("no HTTP %s probe", p.kind)
				continue
			}
			port, ok := containerPort(c, p.probe.HTTPGet.Port)
			if !ok || port != ports[vars.ops] {
				bad("the %s probe is on port %s, not the ops listener's %d (%s)", p.kind, p.probe.HTTPGet.Port.String(), ports[vars.ops], vars.ops)
			}
			if p.probe.HTTPGet.Path != p.path {
				bad("the %s probe asks %s, want %s", p.kind, p.probe.HTTPGet.Path, p.path)
			}
		}
	}
	return out
}
