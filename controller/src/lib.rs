//! The FerroLB controller library: the reconciler's plan of what to write ([`reconcile`],
//! pure, on the model's allocator) and the thin Kubernetes layer that watches and writes
//! ([`k8s`]: Service status, IPAddressPool status, Events, the leader Lease, the
//! membership Secret).

pub mod k8s;
pub mod reconcile;

/// The CRDs of the MetalLB-compatible types, as the multi-document YAML committed in
/// `manifests/crds/crds.yaml`.
pub fn crds() -> Result<String, serde_saphyr::SerializeError> {
    use ferrolb_model::api::{IPAddressPool, ServiceL2Status, l2_advertisement_crd};
    use kube::CustomResourceExt;
    let docs = [
        serde_saphyr::to_string(&IPAddressPool::crd())?,
        serde_saphyr::to_string(&l2_advertisement_crd())?,
        serde_saphyr::to_string(&ServiceL2Status::crd())?,
    ];
    // OpenAPI keeps bounds as floats; written as integers they read the same to every
    // YAML parser (Helm's re-rendering of the chart's copy included).
    let text: String = docs
        .join("---\n")
        .lines()
        .map(|l| {
            let bound = l.trim_start().starts_with("minimum: ") || l.trim_start().starts_with("maximum: ");
            let l = if bound { l.strip_suffix(".0").unwrap_or(l) } else { l };
            format!("{l}\n")
        })
        .collect();
    Ok(text)
}
