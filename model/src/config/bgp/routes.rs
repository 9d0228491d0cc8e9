//! Who announces what over BGP, as MetalLB's speaker decides it (`ShouldAnnounce` and
//! `SetBalancer`, speaker/bgp_controller.go:155-200 and 325-350 at MetalLB 7938d3f89):
//! every node an advertisement selects announces, unlike layer 2's one owner; a
//! `Local`-policy Service only from nodes with a ready endpoint of it, a `Cluster` one
//! while any endpoint is ready; nodes excluded from load balancers never.

use std::collections::BTreeSet;
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
    for a in assigned {
        let Some(pool) = config.pools.iter().find(|p| p.name == a.pool) else { continue };
        let Some(svc) = config.services.iter().find(|s| s.key() == a.service) else { continue };
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
