package check

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The custom resources below are written out here because the Go modules
// that define them (github.com/spiffe/spire-controller-manager,
// github.com/cloudnative-pg/cloudnative-pg) cannot be fetched where these
// tests run. Each copies the real type's JSON field names, from the
// versions named; ClusterSPIFFEID whole, the CloudNativePG Cluster only in
// the fields this chart sets, so that strict decoding still refuses a
// misspelt field (and refuses a field the chart starts using before it is
// added here, with its real name).

// ClusterSPIFFEID is spire.spiffe.io/v1alpha1 ClusterSPIFFEID
// (spire-controller-manager api/v1alpha1/clusterspiffeid_types.go).
type ClusterSPIFFEID struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterSPIFFEIDSpec `json:"spec"`
}

// ClusterSPIFFEIDSpec is the spec of a ClusterSPIFFEID.
type ClusterSPIFFEIDSpec struct {
	SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
	TTL                       metav1.Duration       `json:"ttl"`
	JWTTTL                    metav1.Duration       `json:"jwtTtl"`
	DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
	WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
	FederatesWith             []string              `json:"federatesWith,omitempty"`
	NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
	Admin                     bool                  `json:"admin,omitempty"`
	Downstream                bool                  `json:"downstream,omitempty"`
	AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
	ClassName                 string                `json:"className,omitempty"`
	Fallback                  bool                  `json:"fallback,omitempty"`
	Hint                      string                `json:"hint,omitempty"`
}

// SPIFFEIDTemplateData is what the SPIRE Controller Manager gives a
// ClusterSPIFFEID's templates (pkg/spireentry/entries.go, templateData).
type SPIFFEIDTemplateData struct {
	TrustDomain   string
	ClusterName   string
	ClusterDomain string
	PodMeta       *metav1.ObjectMeta
	PodSpec       *corev1.PodSpec
	NodeMeta      *metav1.ObjectMeta
	NodeSpec      *corev1.NodeSpec
}

// PostgresCluster is postgresql.cnpg.io/v1 Cluster (CloudNativePG
// api/v1/cluster_types.go), in the fields the chart sets.
type PostgresCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              PostgresClusterSpec `json:"spec"`
}

// PostgresClusterSpec is ClusterSpec.
type PostgresClusterSpec struct {
	Instances             int                         `json:"instances"`
	ImageName             string                      `json:"imageName,omitempty"`
	EnableSuperuserAccess *bool                       `json:"enableSuperuserAccess,omitempty"`
	PostgresConfiguration PostgresConfiguration       `json:"postgresql,omitempty"`
	Bootstrap             *BootstrapConfiguration     `json:"bootstrap,omitempty"`
	Managed               *ManagedConfiguration       `json:"managed,omitempty"`
	StorageConfiguration  StorageConfiguration        `json:"storage,omitempty"`
	Affinity              AffinityConfiguration       `json:"affinity,omitempty"`
	Resources             corev1.ResourceRequirements `json:"resources,omitempty"`
}

// PostgresConfiguration is the cluster's postgresql section.
type PostgresConfiguration struct {
	Parameters  map[string]string                `json:"parameters,omitempty"`
	Synchronous *SynchronousReplicaConfiguration `json:"synchronous,omitempty"`
}

// SynchronousReplicaConfiguration is postgresql.synchronous.
type SynchronousReplicaConfiguration struct {
	Method         string `json:"method"`
	Number         int    `json:"number"`
	DataDurability string `json:"dataDurability,omitempty"`
}

// BootstrapConfiguration is the cluster's bootstrap section.
type BootstrapConfiguration struct {
	InitDB *BootstrapInitDB `json:"initdb,omitempty"`
}

// BootstrapInitDB is bootstrap.initdb.
type BootstrapInitDB struct {
	Database string                `json:"database,omitempty"`
	Owner    string                `json:"owner,omitempty"`
	Secret   *LocalObjectReference `json:"secret,omitempty"`
}

// ManagedConfiguration is the cluster's managed section.
type ManagedConfiguration struct {
	Roles []RoleConfiguration `json:"roles,omitempty"`
}

// RoleConfiguration is one managed role.
type RoleConfiguration struct {
	Name           string                `json:"name"`
	Ensure         string                `json:"ensure,omitempty"`
	PasswordSecret *LocalObjectReference `json:"passwordSecret,omitempty"`
	Inherit        *bool                 `json:"inherit,omitempty"`
	Superuser      bool                  `json:"superuser,omitempty"`
	CreateDB       bool                  `json:"createdb,omitempty"`
	CreateRole     bool                  `json:"createrole,omitempty"`
	Login          bool                  `json:"login,omitempty"`
	Replication    bool                  `json:"replication,omitempty"`
	BypassRLS      bool                  `json:"bypassrls,omitempty"`
}

// StorageConfiguration is the cluster's storage section.
type StorageConfiguration struct {
	StorageClass *string `json:"storageClass,omitempty"`
	Size         string  `json:"size,omitempty"`
}

// AffinityConfiguration is the cluster's affinity section.
type AffinityConfiguration struct {
	EnablePodAntiAffinity *bool  `json:"enablePodAntiAffinity,omitempty"`
	TopologyKey           string `json:"topologyKey,omitempty"`
	PodAntiAffinityType   string `json:"podAntiAffinityType,omitempty"`
}

// LocalObjectReference names an object in the cluster's namespace.
type LocalObjectReference struct {
	Name string `json:"name"`
}
