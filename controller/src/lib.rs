//! The FerroLB controller library: the allocator that gives LoadBalancer Services their
//! addresses. Pure: no I/O; the binary and the speaker's standalone mode call it.

pub mod allocator;

pub use allocator::{AllocError, Allocation, Allocator, Assignment, Unassigned, allocate_all};

/// The CRDs of the MetalLB-compatible types, as the multi-document YAML committed in
/// `manifests/crds/crds.yaml`.
pub fn crds() -> Result<String, serde_yaml::Error> {
    use ferrolb_proto::api::{IPAddressPool, L2Advertisement};
    use kube::CustomResourceExt;
    let docs = [serde_yaml::to_string(&IPAddressPool::crd())?, serde_yaml::to_string(&L2Advertisement::crd())?];
    Ok(docs.join("---\n"))
}
