//! Objects as the API server serves them. A file has no API server, so what it would
//! fill in (a Namespace's name label, a Service's IP families) is completed here, in one
//! place, and the file source and the cluster source match and allocate alike.

use std::collections::BTreeMap;

use crate::api::LoadBalancerService;
use crate::range::Family;

/// The label the API server puts on every Namespace, its name as value
/// (NamespaceDefaultLabelName, Kubernetes 1.21+).
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// A Namespace's labels as the API server serves them: `labels` (none where the source has
/// no Namespace object, as a file naming a namespace only through its Services) with
/// [`LABEL_NAMESPACE_NAME`] set to `name`. Both sources, the file and the cluster, match
/// pools' `namespaceSelectors` against these, as MetalLB matches them against the
/// Namespaces it lists (internal/config/config.go:593-604 at MetalLB 7938d3f89).
pub fn namespace_labels(name: &str, labels: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut served = labels.cloned().unwrap_or_default();
    served.insert(LABEL_NAMESPACE_NAME.to_string(), name.to_string());
    served
}

/// The families a Service declares in `ipFamilies`, in order.
pub fn declared_families(svc: &LoadBalancerService) -> Vec<Family> {
    svc.ip_families
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect()
}

fn dual_stack_policy(svc: &LoadBalancerService) -> bool {
    matches!(svc.ip_family_policy.as_deref(), Some("PreferDualStack" | "RequireDualStack"))
}

/// The families the API server gives a Service: those of its cluster IPs. A Service from
/// a file has none: then those `ipFamilies` declares (the first only, unless a dual-stack
/// policy asks for both); `None` when it declares none either.
pub fn service_families(svc: &LoadBalancerService) -> Option<Vec<Family>> {
    if !svc.cluster_ips.is_empty() {
        return Some(svc.cluster_ips.iter().map(|ip| Family::of(*ip)).collect());
    }
    let mut declared = declared_families(svc);
    if declared.is_empty() {
        return None;
    }
    if !dual_stack_policy(svc) {
        declared.truncate(1);
    }
    Some(declared)
}

/// The API server's default for a Service that says nothing of its families: IPv4 for
/// single stack, both for the dual-stack policies.
pub fn default_families(svc: &LoadBalancerService) -> Vec<Family> {
    if dual_stack_policy(svc) { vec![Family::V4, Family::V6] } else { vec![Family::V4] }
}
