package check

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Want is what the checks compare the objects with: what the release was
// asked for, not what the chart computed from it.
type Want struct {
	Release       Release
	TrustDomain   string
	ClusterDomain string
}

// workload is one pod template of the chart, with what the checks need.
type workload struct {
	// component is Nexus, a Keeper or the migration ("nexus", "keeper",
	// "migrate"), from the app.kubernetes.io/component label.
	component string
	// kind and name name the owning object.
	kind, name string
	pod        *corev1.PodTemplateSpec
	// pods are the names its pods get: StatefulSet pods by ordinal, others
	// an example name.
	pods []string
}

func (w workload) String() string { return w.kind + " " + w.name }

// container returns the workload's one container, or nil.
func (w workload) container() *corev1.Container {
	if len(w.pod.Spec.Containers) != 1 {
		return nil
	}
	return &w.pod.Spec.Containers[0]
}

// env returns the literal value of a container's variable and whether it
// is set (a variable from a Secret has no literal value).
func env(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// envVar returns a container's variable, or nil.
func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// workloads lists every pod template of the objects.
func (o *Objects) workloads() []workload {
	var ws []workload
	for _, d := range o.Deployments {
		ws = append(ws, workload{d.Spec.Template.Labels[componentLabel], "Deployment", d.Name, &d.Spec.Template, []string{d.Name + "-5d8f9c7b6-x2x9q"}})
	}
	for _, s := range o.StatefulSets {
		w := workload{s.Spec.Template.Labels[componentLabel], "StatefulSet", s.Name, &s.Spec.Template, nil}
		n := int32(1)
		if s.Spec.Replicas != nil {
			n = *s.Spec.Replicas
		}
		for i := range n {
			w.pods = append(w.pods, fmt.Sprintf("%s-%d", s.Name, i))
		}
		ws = append(ws, w)
	}
	for _, j := range o.Jobs {
		ws = append(ws, workload{j.Spec.Template.Labels[componentLabel], "Job", j.Name, &j.Spec.Template, []string{j.Name + "-q7d2k"}})
	}
	return ws
}

// componentLabel tells SPIKE's components apart.
const componentLabel = "app.kubernetes.io/component"

// byComponent returns the workloads of one component.
func byComponent(ws []workload, component string) []workload {
	var out []workload
	for _, w := range ws {
		if w.component == component {
			out = append(out, w)
		}
	}
	return out
}

// podLabels returns the labels a workload's pods carry.
func (w workload) podLabels() labels.Set { return labels.Set(w.pod.Labels) }

// containerPort resolves a probe's or service's port (a number or a port
// name) to a port number of the container.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// listenPort reads the port of a host:port listen address.
func listenPort(addr string) (host string, port int32, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return "", 0, err
	}
	return h, int32(n), nil
}

// isLoopback reports whether a listen host is loopback only.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// splitList splits a comma-separated list, trimming each item.
func splitList(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
