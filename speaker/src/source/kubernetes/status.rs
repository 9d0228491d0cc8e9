//! MetalLB's ServiceL2Status objects: which this node should have, which are stale, and
//! bringing the API server in line.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_model::api::{InterfaceInfo, MetalLBServiceL2Status, ServiceL2Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::Api;

/// Labels of the ServiceL2Status objects (MetalLB's).
pub const LABEL_STATUS_NODE: &str = "metallb.io/node";
const LABEL_STATUS_SERVICE_NAME: &str = "metallb.io/service-name";
const LABEL_STATUS_SERVICE_NAMESPACE: &str = "metallb.io/service-namespace";

/// The ServiceL2Status objects `node` should have: one per Service it announces, named
/// from a hash of node and Service (stable, so writes are idempotent), owned by the
/// speaker Pod (`owner`) as MetalLB's are, so that deleting the Pod deletes them.
pub fn l2_statuses(
    node: &str,
    namespace: &str,
    owner: Option<&OwnerReference>,
    announced: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, ServiceL2Status> {
    announced
        .iter()
        .filter_map(|(key, interfaces)| {
            let (svc_ns, svc_name) = key.split_once('/')?;
            let hash = blake3::hash(format!("{node}/{key}").as_bytes()).to_hex();
            let name = format!("l2-{}", &hash[..20]);
            let mut status = ServiceL2Status::new(&name, Default::default());
            status.metadata.namespace = Some(namespace.into());
            status.metadata.owner_references = owner.map(|o| vec![o.clone()]);
            status.metadata.labels = Some(
                [
                    (LABEL_STATUS_NODE.to_string(), node.to_string()),
                    (LABEL_STATUS_SERVICE_NAME.to_string(), svc_name.to_string()),
                    (LABEL_STATUS_SERVICE_NAMESPACE.to_string(), svc_ns.to_string()),
                ]
                .into(),
            );
            status.status = Some(MetalLBServiceL2Status {
                node: node.into(),
                service_name: svc_name.into(),
                service_namespace: svc_ns.into(),
                interfaces: interfaces.iter().map(|n| InterfaceInfo { name: n.clone() }).collect(),
            });
            Some((name, status))
        })
        .collect()
}

/// Which existing ServiceL2Status objects `node` deletes: its own that `desired` no longer
/// has, and other nodes' for the Services it now announces (their node died or gave the
/// Service up; MetalLB's new owner does the same), so that exactly the current owner is
/// named.
pub fn stale_l2_statuses<'a>(
    node: &str,
    existing: &'a [ServiceL2Status],
    desired: &BTreeMap<String, ServiceL2Status>,
) -> Vec<&'a str> {
    let service = |o: &ServiceL2Status| {
        let labels = o.metadata.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
        (get(LABEL_STATUS_SERVICE_NAMESPACE), get(LABEL_STATUS_SERVICE_NAME))
    };
    let announced: BTreeSet<(String, String)> = desired.values().map(service).collect();
    existing
        .iter()
        .filter(|o| {
            let owner = o.metadata.labels.as_ref().and_then(|l| l.get(LABEL_STATUS_NODE));
            if owner.map(String::as_str) == Some(node) {
                !desired.contains_key(o.metadata.name.as_deref().unwrap_or_default())
            } else {
                announced.contains(&service(o))
            }
        })
        .filter_map(|o| o.metadata.name.as_deref())
        .collect()
}

/// Brings the ServiceL2Status objects in line with `desired`: applies each (object, then
/// status) and deletes the stale ones ([`stale_l2_statuses`]).
pub(super) async fn sync_l2_statuses(
    api: &Api<ServiceL2Status>,
    node: &str,
    desired: &BTreeMap<String, ServiceL2Status>,
) -> Result<(), kube::Error> {
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    let existing = api.list(&ListParams::default()).await?;
    for old in stale_l2_statuses(node, &existing.items, desired) {
        match api.delete(old, &DeleteParams::default()).await {
            Ok(_) => {}
            // Another speaker was first.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let pp = PatchParams::apply("ferrolb-speaker").force();
    for (name, obj) in desired {
        let current = existing.items.iter().find(|o| &o.name_any() == name);
        if current.is_some_and(|c| c.status == obj.status) {
            continue;
        }
        let mut meta_only = obj.clone();
        meta_only.status = None;
        api.patch(name, &pp, &Patch::Apply(&meta_only)).await?;
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": obj.status })))
            .await?;
    }
    Ok(())
}
