// Package check is the offline validation of SPIKE's Helm chart
// (deploy/helm/spike). There is no Kubernetes cluster where the tests run,
// so the tests render the chart with Helm's own Go SDK (values checked
// against values.schema.json as `helm install` does), decode every rendered
// object strictly into the Kubernetes API types (an unknown or misspelt
// field is an error) and into the types of the custom resources the chart
// creates, and check what can be checked without a cluster: pods run as
// non-root with a read-only root filesystem, no privilege escalation and no
// service-account token; probes hit /readyz and /healthz on the ops ports;
// resources are set; images are pinned by digest; the SPIFFE IDs the SPIRE
// Controller Manager would issue are the ones Nexus and the Keepers expect;
// Nexus lists every Keeper and each Keeper its peers; the NetworkPolicies
// admit exactly the listed traffic; the migration Job alone holds the
// schema owner's password.
package check
