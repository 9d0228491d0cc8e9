//! What each binary keeps of the objects it watches, so that a store's memory follows
//! what is read (a Node's image list alone can be tens of kilobytes). Managed fields go
//! everywhere.

use ferrolb_model::api::ANNOTATION_ALLOCATED_FROM_POOL;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub fn meta<K: kube::Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A Service as the speaker reads it: nothing of one that is not a LoadBalancer.
pub fn service_for_speaker(s: &mut Service) {
    meta(s);
    if let Some(a) = &mut s.metadata.annotations {
        a.retain(|k, _| k == ANNOTATION_ALLOCATED_FROM_POOL);
    }
    // Listed only where the API server cannot select by type (before 1.31).
    if s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) != Some("LoadBalancer") {
        s.metadata.labels = None;
        s.metadata.annotations = None;
        s.spec = None;
        s.status = None;
    }
}

pub fn node(n: &mut Node) {
    meta(n);
    n.metadata.annotations = None;
    n.spec = None;
    if let Some(status) = &mut n.status {
        let conditions =
            status.conditions.take().map(|cs| cs.into_iter().filter(|c| c.type_ == "NetworkUnavailable").collect());
        *status = Default::default();
        status.conditions = conditions;
    }
}

pub fn slice(s: &mut EndpointSlice) {
    meta(s);
    s.metadata.annotations = None;
    s.ports = None;
    for ep in &mut s.endpoints {
        ep.addresses.clear();
        ep.hints = None;
        ep.target_ref = None;
        ep.hostname = None;
        ep.zone = None;
        ep.deprecated_topology = None;
    }
}

pub fn pod(p: &mut Pod) {
    meta(p);
    p.metadata.annotations = None;
    p.spec = None;
    if let Some(status) = &mut p.status {
        let ip = status.pod_ip.take();
        *status = Default::default();
        status.pod_ip = ip;
    }
}

/// Keeps what the plan reads of a Service, so the store's memory follows what matters: no
/// managed fields anywhere, and of a Service that is not a LoadBalancer only its type,
/// class, status and our pool annotation (what clearing an address it once had needs).
pub fn service_for_controller(s: &mut Service) {
    s.metadata.managed_fields = None;
    let spec = s.spec.get_or_insert_with(Default::default);
    if spec.type_.as_deref() != Some("LoadBalancer") {
        *spec = ServiceSpec {
            type_: spec.type_.take(),
            load_balancer_class: spec.load_balancer_class.take(),
            ..Default::default()
        };
        s.metadata.labels = None;
        if let Some(a) = &mut s.metadata.annotations {
            a.retain(|k, _| k == ANNOTATION_ALLOCATED_FROM_POOL);
        }
    }
}
