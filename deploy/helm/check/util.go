package check

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// findService returns the Service called name, or nil.
func findService(o *Objects, name string) *corev1.Service {
	for _, s := range o.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// selectsAll reports whether a non-empty map selector selects set.
func selectsAll(selector map[string]string, set labels.Set) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(set)
}

// matches reports whether a label selector (nil: nothing) selects set.
func matches(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}

// antiAffinitySelects reports whether a pod anti-affinity term, required
// or preferred, keeps pods with these labels apart.
func antiAffinitySelects(a *corev1.PodAntiAffinity, podLabels map[string]string) bool {
	terms := slices.Clone(a.RequiredDuringSchedulingIgnoredDuringExecution)
	for _, w := range a.PreferredDuringSchedulingIgnoredDuringExecution {
		terms = append(terms, w.PodAffinityTerm)
	}
	for _, t := range terms {
		if t.TopologyKey != "" && matches(t.LabelSelector, podLabels) {
			return true
		}
	}
	return false
}

// sorted returns a sorted copy.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// sortedValues returns a map's values, sorted.
func sortedValues(m map[string]string) []string {
	return slices.Sorted(maps.Values(m))
}

// podWithLabels returns a pod template with these labels and service
// account.
func podWithLabels(l map[string]string, sa string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: l},
		Spec:       corev1.PodSpec{ServiceAccountName: sa},
	}
}

// saOf returns the service account of a k8s:sa workload selector, or "".
func saOf(templates []string) string {
	for _, t := range templates {
		if sa, ok := strings.CutPrefix(t, "k8s:sa:"); ok {
			return sa
		}
	}
	return ""
}
