//! The plan built from the cluster's objects, and the members as their Nodes describe
//! them. Pure: objects in, values out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_model::api::{self, IPAddressPool, L2Advertisement, LoadBalancerService};
use ferrolb_model::config::bgp::{BgpObjects, BgpPlan, Ready};
use ferrolb_model::config::{self, Config, Plan, ServiceAddresses};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use tracing::warn;

use crate::cluster::membership::Member;

/// Label of the EndpointSlices of a Service.
pub(super) const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Every address the controller assigned (Services' status) that an L2Advertisement
/// covers, with who may announce it.
pub fn plan(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    pools: &[Arc<IPAddressPool>],
    advertisements: &[Arc<L2Advertisement>],
    namespace: &str,
    lb_class: Option<&str>,
    bgp: Option<BgpObjects>,
) -> Plan {
    let in_ns = |ns: Option<&String>| ns.map(String::as_str) == Some(namespace);
    // Invalid pools are the controller's to report, and it keeps serving their last valid
    // version; here an edit gone wrong must not stop what they hold from being answered.
    // An address belongs to the pool the controller says it came from (its annotation);
    // without one, to the first pool containing it, valid pools first, by name. Invalid
    // pools count with the ranges that parse. All of it is the same on every speaker,
    // which a remembered last good version would not be after a restart.
    let mut pools: Vec<(bool, config::Pool)> = pools
        .iter()
        .filter(|p| in_ns(p.metadata.namespace.as_ref()))
        .map(|p| {
            let (pool, issues) = config::pool_from_api("", p);
            (!issues.is_empty(), pool)
        })
        .collect();
    pools.sort_by(|(a_bad, a), (b_bad, b)| (a_bad, &a.name).cmp(&(b_bad, &b.name)));
    let pools: Vec<config::Pool> = pools.into_iter().map(|(_, p)| p).collect();
    let l2_advertisements: Vec<L2Advertisement> =
        advertisements.iter().filter(|a| in_ns(a.metadata.namespace.as_ref())).map(|a| (**a).clone()).collect();
    let services: Vec<LoadBalancerService> = services
        .iter()
        .map(|s| LoadBalancerService::from(&**s))
        .filter(|s| s.is_load_balancer() && s.load_balancer_class.as_deref() == lb_class && !s.ingress_ips.is_empty())
        .collect();
    let mut assigned = Vec::new();
    for svc in &services {
        let mut by_pool: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        let allocated_from = svc.annotations.get(api::ANNOTATION_ALLOCATED_FROM_POOL);
        for ip in &svc.ingress_ips {
            let pool = pools
                .iter()
                .find(|p| Some(&p.name) == allocated_from)
                .or_else(|| pools.iter().find(|p| p.contains(*ip)));
            if let Some(pool) = pool {
                by_pool.entry(&pool.name).or_default().push(*ip);
            }
        }
        for (pool, addresses) in by_pool {
            assigned.push(ServiceAddresses { service: svc.key(), pool: pool.to_string(), addresses });
        }
    }
    let config = Config { pools, l2_advertisements, services, ..Config::default() };
    let mut plan = Plan::new(&config, &assigned);
    let services = &config.services;

    // Nodes with a ready endpoint, per Service.
    let mut ready: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut any_ready: BTreeSet<String> = BTreeSet::new();
    for slice in slices {
        let Some(name) = slice.labels().get(LABEL_SERVICE_NAME) else { continue };
        let key = format!("{}/{name}", slice.namespace().unwrap_or_default());
        for ep in &slice.endpoints {
            // Ready unless said otherwise (the API's own rule).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            any_ready.insert(key.clone());
            if let Some(node) = &ep.node_name {
                ready.entry(key.clone()).or_default().insert(node.clone());
            }
        }
    }
    let local: BTreeSet<String> = services
        .iter()
        .filter(|s| s.external_traffic_policy.as_deref() == Some("Local"))
        .map(LoadBalancerService::key)
        .collect();
    for c in &mut plan.candidates {
        if c.services.iter().any(|s| local.contains(s)) {
            // Services sharing an address under Local select the same pods.
            c.only_nodes = Some(c.services.iter().flat_map(|s| ready.get(s).into_iter().flatten().cloned()).collect());
        } else if !c.services.iter().any(|s| any_ready.contains(s)) {
            c.only_nodes = Some(BTreeSet::new());
        }
    }
    // BGP mode: every node an advertisement selects announces, Local Services only where
    // an endpoint is ready (the model decides, per node, from this).
    if let Some(objects) = bgp {
        let (bgp, errors, warnings) = config::bgp::validate(objects, &config.pools);
        for i in &errors {
            warn!(object = %i.object, field = %i.field, "{} (left out)", i.message);
        }
        for i in &warnings {
            warn!(object = %i.object, field = %i.field, "{}", i.message);
        }
        let mut bgp_plan = BgpPlan::new(&Config { bgp, ..config }, &assigned);
        bgp_plan.ready = Some(
            bgp_plan
                .config
                .services
                .iter()
                .map(|s| {
                    let key = s.key();
                    let nodes = ready.get(&key).cloned().unwrap_or_default();
                    (key.clone(), Ready { any: any_ready.contains(&key), nodes })
                })
                .collect(),
        );
        plan.bgp = Some(Arc::new(bgp_plan));
    }
    plan
}

/// The live members as the cluster's Node objects describe them: labels from the Node,
/// and nodes whose network is down (`NetworkUnavailable`) left out.
pub fn members_with_nodes(members: &[Member], nodes: &[Arc<Node>]) -> Vec<Member> {
    let by_name: HashMap<String, &Node> = nodes.iter().map(|n| (n.name_any(), &**n)).collect();
    members
        .iter()
        .filter_map(|m| {
            let Some(node) = by_name.get(&m.name) else {
                return Some(m.clone());
            };
            let unavailable = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True"));
            (!unavailable).then(|| Member { labels: node.labels().clone(), ..m.clone() })
        })
        .collect()
}
