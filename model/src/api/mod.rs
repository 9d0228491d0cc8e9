//! MetalLB-compatible API types. Field names follow `metallb.io/v1beta1` exactly so a
//! user's existing YAML deserializes unchanged; the same types serve the cluster side.

mod bgp;

pub use bgp::{
    BFDProfile, BFDProfileSpec, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, Community,
    CommunityAlias, CommunitySpec, SecretReference,
};

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "metallb.io";
/// Comma-separated addresses a Service asks for (at most one per family).
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "metallb.io/loadBalancerIPs";
/// The pool a Service asks to be allocated from.
pub const ANNOTATION_ADDRESS_POOL: &str = "metallb.io/address-pool";
/// Services with the same key may share an address.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";
/// Written by the controller on each Service it gave addresses: the pool they came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
/// The annotation prefix of MetalLB before v0.13, still honoured.
pub const LEGACY_ANNOTATION_PREFIX: &str = "metallb.universe.tf/";
/// Nodes with this label never announce LoadBalancer addresses (as kube-proxy and MetalLB).
pub const LABEL_EXCLUDE_FROM_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// A pool of addresses that LoadBalancer Services can be given.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    namespaced,
    status = "IPAddressPoolStatus",
    printcolumn = r#"{"name":"Auto Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Avoid Buggy IPs","type":"boolean","jsonPath":".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.0.2.0/28`) and ranges (`192.0.2.10-192.0.2.20`), IPv4 or IPv6.
    pub addresses: Vec<String>,
    /// Whether addresses are handed out to Services that did not ask for this pool. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Skip IPv4 addresses ending in .0 and .255. Default false.
    #[serde(default, rename = "avoidBuggyIPs", skip_serializing_if = "Option::is_none")]
    pub avoid_buggy_ips: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

impl IPAddressPoolSpec {
    pub fn auto_assign(&self) -> bool {
        self.auto_assign.unwrap_or(true)
    }
    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips.unwrap_or(false)
    }
}

/// Which Services a pool prefers to serve, and with what priority.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower numbers are tried first; pools without a priority come last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    #[serde(default, rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    #[serde(default, rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    #[serde(default, rename = "availableIPv4")]
    pub available_ipv4: i64,
    #[serde(default, rename = "availableIPv6")]
    pub available_ipv6: i64,
    /// FerroLB's addition: `Valid`, false with the reason when the pool is rejected (the
    /// last valid version, if any, keeps serving).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// Which node announces a Service, and on which interfaces: kept by the speakers, one
/// per Service and announcing node (MetalLB's `ServiceL2Status`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    namespaced,
    status = "MetalLBServiceL2Status",
    printcolumn = r#"{"name":"Allocated Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceL2StatusSpec {}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetalLBServiceL2Status {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_namespace: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InterfaceInfo {
    pub name: String,
}

/// Announces the addresses of the selected pools with ARP/NDP from the selected nodes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "L2Advertisement", root = "L2AdvertisementCrd", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name. With no pools and no selectors, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on; every eligible one when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Services (by their labels) whose addresses are announced; all when empty
    /// (MetalLB v0.16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preferences for the node that announces: of the nodes that may, those with the
    /// highest summed weight win (MetalLB v0.16, `sortL2Candidates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

/// A weighted soft preference for nodes, as Kubernetes' PreferredSchedulingTerm.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PreferredNodeSelector {
    /// Added to the score of every node `preference` selects.
    #[schemars(extend("minimum" = 1, "maximum" = 100))]
    pub weight: i32,
    /// An empty selector selects every node.
    pub preference: LabelSelector,
}

/// An `L2Advertisement` object. The derived [`L2AdvertisementCrd`] only gives the CRD
/// ([`l2_advertisement_crd`]): here `spec` may be missing and means empty (every pool,
/// node and interface), since MetalLB's documented minimal advertisement
/// (`configsamples/simple_pool_adv_l2.yaml`) has none and MetalLB's CRD stores it so.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(into = "L2AdvertisementCrd")]
pub struct L2Advertisement {
    #[serde(default)]
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    pub spec: L2AdvertisementSpec,
}

impl From<L2Advertisement> for L2AdvertisementCrd {
    fn from(a: L2Advertisement) -> Self {
        L2AdvertisementCrd { metadata: a.metadata, spec: a.spec }
    }
}

impl kube::Resource for L2Advertisement {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        L2AdvertisementCrd::kind(&())
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        L2AdvertisementCrd::group(&())
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        L2AdvertisementCrd::version(&())
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        L2AdvertisementCrd::plural(&())
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.metadata
    }
}

/// The L2Advertisement CRD, with `spec` optional as in MetalLB's.
pub fn l2_advertisement_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = L2AdvertisementCrd::crd();
    for v in &mut crd.spec.versions {
        if let Some(schema) = v.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.required = None;
            schema.title = Some("L2Advertisement".into());
        }
    }
    crd
}

/// A port of a Service, as far as address sharing cares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub port: i32,
    pub protocol: String,
}

/// A few annotations, in a vector: one entry costs its two strings, where a `BTreeMap`
/// allocates a node for eleven (10,000 Services held 5 MB more).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations(Vec<(String, String)>);

impl Annotations {
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn insert(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

impl FromIterator<(String, String)> for Annotations {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut a = Annotations::default();
        for (k, v) in iter {
            a.insert(k, v);
        }
        a.0.shrink_to_fit();
        a
    }
}

/// The part of a `v1` Service that a load balancer reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadBalancerService {
    pub namespace: String,
    pub name: String,
    /// The MetalLB annotations only (`metallb.io/`, `metallb.universe.tf/`): a real
    /// Service can carry kilobytes of others (`last-applied-configuration`).
    pub annotations: Annotations,
    pub labels: BTreeMap<String, String>,
    pub type_: String,
    pub load_balancer_ip: Option<String>,
    pub load_balancer_class: Option<String>,
    pub ip_families: Vec<String>,
    /// `spec.clusterIPs` (or `spec.clusterIP`): the families the API server gave the
    /// Service, which MetalLB's allocator follows (`internal/ipfamily/ipfamily.go`, `ForService`).
    pub cluster_ips: Vec<IpAddr>,
    pub ip_family_policy: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub ports: Vec<ServicePort>,
    /// `spec.selector`: which pods back the Service.
    pub selector: BTreeMap<String, String>,
    /// `status.loadBalancer.ingress[].ip`: what has already been assigned.
    pub ingress_ips: Vec<IpAddr>,
    /// `metadata.creationTimestamp`: the older of two Services claiming one address keeps it.
    pub created: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

impl LoadBalancerService {
    /// `namespace/name`, the key Services are known by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn is_load_balancer(&self) -> bool {
        self.type_ == "LoadBalancer"
    }

    /// An annotation by its `metallb.io/` name, falling back to the legacy
    /// `metallb.universe.tf/` prefix. The flag says whether the legacy name was used.
    pub fn annotation(&self, name: &str) -> Option<(&str, bool)> {
        if let Some(v) = self.annotations.get(name) {
            return Some((v.as_str(), false));
        }
        let legacy = name.replacen("metallb.io/", LEGACY_ANNOTATION_PREFIX, 1);
        self.annotations.get(&legacy).map(|v| (v.as_str(), true))
    }
}

impl From<&Service> for LoadBalancerService {
    fn from(svc: &Service) -> Self {
        let meta = &svc.metadata;
        let spec = svc.spec.clone().unwrap_or_default();
        let ingress_ips = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        LoadBalancerService {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            annotations: meta
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with("metallb.io/") || k.starts_with(LEGACY_ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            labels: meta.labels.clone().unwrap_or_default(),
            type_: spec.type_.unwrap_or_else(|| "ClusterIP".into()),
            load_balancer_ip: spec.load_balancer_ip.filter(|s| !s.is_empty()),
            load_balancer_class: spec.load_balancer_class,
            ip_families: spec.ip_families.unwrap_or_default(),
            cluster_ips: match spec.cluster_ips.filter(|c| !c.is_empty()) {
                Some(ips) => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
                None => spec.cluster_ip.iter().filter_map(|ip| ip.parse().ok()).collect(),
            },
            ip_family_policy: spec.ip_family_policy,
            external_traffic_policy: spec.external_traffic_policy,
            ports: spec
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| ServicePort { port: p.port, protocol: p.protocol.unwrap_or_else(|| "TCP".into()) })
                .collect(),
            selector: spec.selector.unwrap_or_default(),
            ingress_ips,
            created: meta.creation_timestamp.clone(),
        }
    }
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions, as Kubernetes
/// evaluates them). An unknown operator matches nothing.
/// Whether a list of selectors picks `labels`: an empty list picks everything (MetalLB's
/// rule for every `*Selectors` field), otherwise any one selector that matches.
pub fn any_selects(selectors: &[LabelSelector], labels: &BTreeMap<String, String>) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| selector_matches(s, labels))
}

pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())].into();
        let mut sel = LabelSelector::default();
        assert!(selector_matches(&sel, &labels), "the empty selector matches everything");
        sel.match_labels = Some([("zone".to_string(), "b".to_string())].into());
        assert!(!selector_matches(&sel, &labels));
        sel.match_labels = None;
        sel.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "zone".into(),
            operator: "In".into(),
            values: Some(vec!["a".into(), "c".into()]),
        }]);
        assert!(selector_matches(&sel, &labels));
        sel.match_expressions.as_mut().unwrap()[0].operator = "NotIn".into();
        assert!(!selector_matches(&sel, &labels));
        sel.match_expressions.as_mut().unwrap()[0].operator = "DoesNotExist".into();
        assert!(!selector_matches(&sel, &labels));
    }
}
