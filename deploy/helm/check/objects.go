package check

import (
	"errors"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Objects are the rendered objects, decoded, by kind.
type Objects struct {
	Deployments      []*appsv1.Deployment
	StatefulSets     []*appsv1.StatefulSet
	Jobs             []*batchv1.Job
	Services         []*corev1.Service
	ServiceAccounts  []*corev1.ServiceAccount
	PDBs             []*policyv1.PodDisruptionBudget
	NetworkPolicies  []*networkingv1.NetworkPolicy
	ClusterSPIFFEIDs []*ClusterSPIFFEID
	PostgresClusters []*PostgresCluster
	ServiceMonitors  []*monitoringv1.ServiceMonitor
}

// Decode decodes every document strictly into the type of its apiVersion
// and kind: a field the type does not have, a duplicate field or a kind
// the chart is not known to create is an error.
func Decode(docs []Document) (*Objects, error) {
	o := &Objects{}
	for _, d := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(d.YAML), &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", d.Template, err)
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			return nil, fmt.Errorf("%s: %w", d.Template, errNoKind)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			o.Deployments, err = decodeInto(d, o.Deployments)
		case "apps/v1 StatefulSet":
			o.StatefulSets, err = decodeInto(d, o.StatefulSets)
		case "batch/v1 Job":
			o.Jobs, err = decodeInto(d, o.Jobs)
		case "v1 Service":
			o.Services, err = decodeInto(d, o.Services)
		case "v1 ServiceAccount":
			o.ServiceAccounts, err = decodeInto(d, o.ServiceAccounts)
		case "policy/v1 PodDisruptionBudget":
			o.PDBs, err = decodeInto(d, o.PDBs)
		case "networking.k8s.io/v1 NetworkPolicy":
			o.NetworkPolicies, err = decodeInto(d, o.NetworkPolicies)
		case "spire.spiffe.io/v1alpha1 ClusterSPIFFEID":
			o.ClusterSPIFFEIDs, err = decodeInto(d, o.ClusterSPIFFEIDs)
		case "postgresql.cnpg.io/v1 Cluster":
			o.PostgresClusters, err = decodeInto(d, o.PostgresClusters)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			o.ServiceMonitors, err = decodeInto(d, o.ServiceMonitors)
		default:
			err = fmt.Errorf("%s %s: not a kind this chart is known to create", tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Template, err)
		}
	}
	return o, nil
}

// decodeInto decodes d strictly into a new T and appends it, as the API
// server does: YAML with no duplicate keys, then JSON whose field names
// must match the type's exactly (encoding/json alone would take
// "readOnlyRootFileSystem" for readOnlyRootFilesystem).
func decodeInto[T any](d Document, list []*T) ([]*T, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(d.YAML))
	if err != nil {
		return nil, err
	}
	v := new(T)
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(strict...); err != nil {
		return nil, err
	}
	return append(list, v), nil
}
