//! Who announces what over BGP, as MetalLB's speaker decides it (`ShouldAnnounce` and
//! `SetBalancer`, speaker/bgp_controller.go:155-200 and 325-350 at MetalLB 7938d3f89):
//! every node an advertisement selects announces, unlike layer 2's one owner; a
//! `Local`-policy Service only from nodes with a ready endpoint of it, a `Cluster` one
//! while any endpoint is ready; nodes excluded from load balancers never.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{BgpConfig, CommunityValue, Peer, advertises, compatible_local_pref};
use crate::api::{self, any_selects};
use crate::config::{Config, NodeInfo, ServiceAddresses};

/// What is known of a Service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoints {
    /// A ready endpoint anywhere.
    pub any_ready: bool,
    /// A ready endpoint on the node deciding.
    pub ready_here: bool,
}

/// One prefix a node announces, to which of its peers, with which attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The address masked to the advertisement's aggregation length.
    pub prefix: IpAddr,
    pub length: u32,
    /// Peers by name; empty: every peer of the node.
    pub peers: Vec<String>,
    pub local_pref: u32,
    pub communities: Vec<CommunityValue>,
}

/// The peers `node` opens sessions to (their node selectors).
pub fn peers_for_node<'a>(bgp: &'a BgpConfig, node: &NodeInfo) -> Vec<&'a Peer> {
    bgp.peers.iter().filter(|p| any_selects(&p.node_selectors, &node.labels)).collect()
}

/// `addr` with every bit past `length` cleared.
pub fn mask(addr: IpAddr, length: u32) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if length == 0 { 0 } else { bits & (u32::MAX << (32 - length.min(32))) };
            IpAddr::V4(kept.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if length == 0 { 0 } else { bits & (u128::MAX << (128 - length.min(128))) };
            IpAddr::V6(kept.into())
        }
    }
}

/// The routes `node` announces for the `assigned` addresses; `endpoints` tells, per
/// Service (`namespace/name`), what is ready. Sorted, without duplicates (Services whose
/// addresses aggregate into one prefix announce it once). A node whose network is
/// unavailable (`NetworkUnavailable`) announces nothing: its caller does not ask.
pub fn routes(
    config: &Config,
    assigned: &[ServiceAddresses],
    node: &NodeInfo,
    endpoints: impl Fn(&str) -> Endpoints,
) -> Vec<Route> {
    if node.labels.contains_key(api::LABEL_EXCLUDE_FROM_LB) {
        return Vec::new();
    }
    let mut out = BTreeSet::new();
    let services: BTreeMap<String, &api::LoadBalancerService> = config.services.iter().map(|s| (s.key(), s)).collect();
    for a in assigned {
        let Some(pool) = config.pools.iter().find(|p| p.name == a.pool) else { continue };
        let Some(svc) = services.get(&a.service) else { continue };
        let ads: Vec<_> = config
            .bgp
            .advertisements
            .iter()
            .filter(|ad| advertises(ad, pool))
            .filter(|ad| any_selects(&ad.node_selectors, &node.labels))
            .filter(|ad| any_selects(&ad.service_selectors, &svc.labels))
            .collect();
        if ads.is_empty() {
            continue;
        }
        // MetalLB's `checkBGPAdvConflicts` (speaker/bgp_controller.go:540): two
        // advertisements giving this Service's update two LOCAL_PREFs announce nothing.
        let conflict =
            ads.iter().enumerate().any(|(i, a)| ads[i + 1..].iter().any(|b| !compatible_local_pref(a, b, pool)));
        if conflict {
            continue;
        }
        let ready = endpoints(&a.service);
        let local = svc.external_traffic_policy.as_deref() == Some("Local");
        if (local && !ready.ready_here) || !ready.any_ready {
            continue;
        }
        for ip in &a.addresses {
            for ad in &ads {
                let length = if ip.is_ipv4() { ad.aggregation_length } else { ad.aggregation_length_v6 };
                out.insert(Route {
                    prefix: mask(*ip, length),
                    length,
                    peers: ad.peers.clone(),
                    local_pref: ad.local_pref,
                    communities: ad.communities.iter().copied().collect(),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Which nodes have a ready endpoint of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// A ready endpoint anywhere (some have no node).
    pub any: bool,
    pub nodes: BTreeSet<String>,
}

/// What BGP mode keeps to decide any node's routes, beside layer 2's plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BgpPlan {
    /// The pools, the Services with addresses and the BGP objects (no layer 2 objects).
    pub config: Config,
    pub assigned: Vec<ServiceAddresses>,
    /// Per Service (`namespace/name`), where its endpoints are ready; `None` (a file):
    /// ready everywhere.
    pub ready: Option<BTreeMap<String, Ready>>,
}

impl BgpPlan {
    pub fn new(config: &Config, assigned: &[ServiceAddresses]) -> BgpPlan {
        let with_address: BTreeSet<&str> = assigned.iter().map(|a| a.service.as_str()).collect();
        let config = Config {
            pools: config.pools.clone(),
            services: config.services.iter().filter(|s| with_address.contains(s.key().as_str())).cloned().collect(),
            bgp: config.bgp.clone(),
            ..Config::default()
        };
        BgpPlan { config, assigned: assigned.to_vec(), ready: None }
    }

    /// The sessions `node` opens.
    pub fn peers(&self, node: &NodeInfo) -> Vec<&Peer> {
        peers_for_node(&self.config.bgp, node)
    }

    /// The routes `node` announces.
    pub fn routes(&self, node: &NodeInfo) -> Vec<Route> {
        routes(&self.config, &self.assigned, node, |service| match &self.ready {
            None => Endpoints { any_ready: true, ready_here: true },
            Some(ready) => ready
                .get(service)
                .map(|r| Endpoints { any_ready: r.any, ready_here: r.nodes.contains(&node.name) })
                .unwrap_or_default(),
        })
    }
}
