// Names of the Kubernetes resources the daemon reads and writes. The CRD
// (docker/manifests/crd-nodenetworkconfig.yaml) and the RBAC ClusterRole in
// docker/ must agree with these.
export const K8S_GROUP = 'vnetcni.dev';
export const K8S_VERSION = 'v1alpha1';
export const NNC_KIND = 'NodeNetworkConfig';
export const NNC_PLURAL = 'nodenetworkconfigs';
export const DEFAULT_NNC_NAMESPACE = 'kube-system';
/** The node condition the daemon owns (kubelet leaves it to the network plugin). */
export const NETWORK_CONDITION = 'NetworkUnavailable';
/** Field manager name on every write, so server-side field ownership shows who wrote what. */
export const FIELD_MANAGER = 'vnet-cni';
