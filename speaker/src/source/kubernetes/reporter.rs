//! Events and ServiceL2Status objects, written by a task of their own: a slow API server
//! must never hold up the announcer (or the others take this node for dead).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_model::api::{LoadBalancerService, ServiceL2Status};
use ferrolb_model::config::Announcement;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use tracing::warn;

use ferrolb_runtime::events::event_note;

use super::status::{l2_statuses, sync_l2_statuses};
use crate::announcer::Outcome;

fn service_ref(services: &Store<Service>, key: &str) -> Option<ObjectReference> {
    let (ns, name) = key.split_once('/')?;
    let svc =
        services.state().into_iter().find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.name_any() == name)?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: svc.metadata.uid.clone(),
        ..ObjectReference::default()
    })
}

/// What the source hands to the [`reporter`] task.
#[derive(Debug)]
pub(super) enum Report {
    Outcome(Outcome),
    /// Try again what failed.
    Retry,
}

/// Writes Events and ServiceL2Status objects, apart from the loop that answers and
/// keeps the membership.
pub(super) struct ReportTo {
    pub(super) recorder: Recorder,
    pub(super) services: Store<Service>,
    pub(super) statuses: Api<ServiceL2Status>,
    pub(super) nodes: Api<Node>,
    pub(super) node: String,
    pub(super) namespace: String,
    pub(super) owner: Option<OwnerReference>,
}

pub(super) async fn reporter(mut reports: tokio::sync::mpsc::UnboundedReceiver<Report>, to: ReportTo) {
    let ReportTo { recorder, services, statuses, nodes, node, namespace, owner } = to;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // None: not yet in line with the API (forces the first sync, and retries after errors).
    let mut synced: Option<BTreeMap<String, BTreeSet<String>>> = None;
    while let Some(report) = reports.recv().await {
        match report {
            Report::Outcome(Outcome::Announced(new)) => announce_events(&recorder, &services, &node, new).await,
            Report::Outcome(Outcome::Conflict(ip)) => conflict_event(&recorder, &services, &node, ip).await,
            Report::Outcome(Outcome::MembershipProblem(reason, note)) => {
                let reference = node_reference(&nodes, &node).await;
                let event = Event {
                    type_: EventType::Warning,
                    reason: reason.into(),
                    note: Some(event_note(note)),
                    action: "Join".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    warn!(error = %e, "event not published");
                }
            }
            Report::Outcome(Outcome::Statuses(s)) => wanted = s,
            Report::Retry => {}
        }
        if synced.as_ref() != Some(&wanted) {
            let desired = l2_statuses(&node, &namespace, owner.as_ref(), &wanted);
            match sync_l2_statuses(&statuses, &node, &desired).await {
                Ok(()) => synced = Some(wanted.clone()),
                Err(e) => {
                    warn!(error = %e, "ServiceL2Status not written; retrying");
                    synced = None;
                }
            }
        }
    }
}

/// One Event per Service when this node starts announcing its addresses: transitions
/// only, not a storm each round (a known complaint about MetalLB's `nodeAssigned`). A
/// dual-stack Service gets one Event naming both addresses (two with the same reason
/// would fold into one series and hide the second).
async fn announce_events(recorder: &Recorder, services: &Store<Service>, node: &str, new: Vec<Announcement>) {
    let mut by_service: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for a in new {
        for svc in a.services {
            by_service.entry(svc).or_default().push(a.ip);
        }
    }
    for (svc, ips) in by_service {
        let Some(reference) = service_ref(services, &svc) else { continue };
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let event = Event {
            type_: EventType::Normal,
            reason: "nodeAssigned".into(),
            note: Some(event_note(format!(
                "announcing {} from node {node:?} with protocol \"layer2\"",
                ips.join(", ")
            ))),
            action: "Announce".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(service = %svc, error = %e, "event not published");
        }
    }
}

/// A Warning Event on each Service of an address another host announces: a split brain
/// or a rogue device made visible where users look.
pub(super) async fn conflict_event(recorder: &Recorder, services: &Store<Service>, node: &str, ip: IpAddr) {
    let owners: Vec<String> = services
        .state()
        .iter()
        .filter(|s| LoadBalancerService::from(&***s).ingress_ips.contains(&ip))
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    for svc in owners {
        let Some(reference) = service_ref(services, &svc) else { continue };
        let event = Event {
            type_: EventType::Warning,
            reason: "AddressConflict".into(),
            note: Some(event_note(format!(
                "another host announces {ip}, which node {node:?} owns: a split brain between speakers or a device using the address"
            ))),
            action: "Announce".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(service = %svc, error = %e, "event not published");
        }
    }
}

/// This node's Node as an Event's subject. With the uid, or `kubectl describe node` does
/// not show the Event (asked for here: this may come before the Nodes' store has listed).
pub(super) async fn node_reference(nodes: &Api<Node>, node: &str) -> ObjectReference {
    let uid = nodes.get_opt(node).await.ok().flatten().and_then(|n| n.metadata.uid);
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_string()),
        uid,
        ..ObjectReference::default()
    }
}
