//! The speaker's plan: every advertised address with the nodes that may announce it, and
//! what one node announces.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::bgp::BgpPlan;
use super::{Config, Pool, ServiceAddresses};
use crate::api::{self, L2Advertisement, selector_matches};

/// What a node knows about itself for L2Advertisement node selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// A node with the `kubernetes.io/hostname` label every Kubernetes node carries.
    pub fn new(name: &str) -> NodeInfo {
        NodeInfo { name: name.into(), labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into() }
    }
}

/// One address this node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub ip: IpAddr,
    pub pool: String,
    /// `namespace/name` of every Service on this address.
    pub services: Vec<String>,
    /// Interfaces to answer on; `None` means every eligible interface.
    pub interfaces: Option<BTreeSet<String>>,
}

/// The part of an L2Advertisement that depends on the node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeScope {
    /// Empty: every node.
    pub node_selectors: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Empty: every eligible interface.
    pub interfaces: BTreeSet<String>,
    /// Soft preferences among the nodes this advertisement selects.
    pub preferred: Vec<api::PreferredNodeSelector>,
}

impl NodeScope {
    pub fn selects(&self, node: &NodeInfo) -> bool {
        api::any_selects(&self.node_selectors, &node.labels)
    }
}

/// An advertised address and the advertisements (indices into [`Plan::scopes`]) covering it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub ip: IpAddr,
    pub pool: String,
    pub services: Vec<String>,
    pub scopes: Vec<u32>,
    /// In a cluster, the nodes with a ready endpoint when that matters
    /// (`externalTrafficPolicy: Local`), or none at all when no endpoint anywhere is ready:
    /// then only these may announce. `None`: no restriction.
    pub only_nodes: Option<BTreeSet<String>>,
}

/// Every advertised address with the nodes that may announce it: what a speaker keeps
/// to decide, for any member of its cluster, whether that member is eligible for an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub scopes: Vec<NodeScope>,
    /// Sorted by address.
    pub candidates: Vec<Candidate>,
    /// BGP mode's part, when BGP objects are configured.
    pub bgp: Option<std::sync::Arc<BgpPlan>>,
}

impl Plan {
    pub fn new(config: &Config, assigned: &[ServiceAddresses]) -> Plan {
        let scopes = config
            .l2_advertisements
            .iter()
            .map(|a| NodeScope {
                node_selectors: a.spec.node_selectors.clone(),
                interfaces: a.spec.interfaces.iter().cloned().collect(),
                preferred: a.spec.preferred_node_selectors.clone(),
            })
            .collect();
        let labels: BTreeMap<String, &BTreeMap<String, String>> =
            config.services.iter().map(|s| (s.key(), &s.labels)).collect();
        let mut by_ip: BTreeMap<IpAddr, (&str, Vec<String>)> = BTreeMap::new();
        for a in assigned {
            for ip in &a.addresses {
                by_ip.entry(*ip).or_insert_with(|| (&a.pool, Vec::new())).1.push(a.service.clone());
            }
        }
        let candidates = by_ip
            .into_iter()
            .filter_map(|(ip, (pool_name, services))| {
                let pool = config.pools.iter().find(|p| p.name == pool_name)?;
                let scopes: Vec<u32> = (0..config.l2_advertisements.len() as u32)
                    .filter(|i| {
                        let adv = &config.l2_advertisements[*i as usize];
                        advertises_pool(adv, pool) && advertises_services(adv, &services, &labels)
                    })
                    .collect();
                (!scopes.is_empty()).then(|| Candidate {
                    ip,
                    pool: pool.name.clone(),
                    services,
                    scopes,
                    only_nodes: None,
                })
            })
            .collect();
        let bgp = (!config.bgp.is_empty()).then(|| std::sync::Arc::new(BgpPlan::new(config, assigned)));
        Plan { scopes, candidates, bgp }
    }

    /// Whether `node` may announce `candidate` (an L2Advertisement selects it).
    pub fn eligible(&self, candidate: &Candidate, node: &NodeInfo) -> bool {
        !node.labels.contains_key(api::LABEL_EXCLUDE_FROM_LB)
            && candidate.only_nodes.as_ref().is_none_or(|only| only.contains(&node.name))
            && candidate.scopes.iter().any(|s| self.scopes[*s as usize].selects(node))
    }

    /// How much the advertisements covering `candidate` prefer `node`: the weights of
    /// their `preferredNodeSelectors` that select it, summed over the advertisements that
    /// select the node (MetalLB's `preferredNodeScores`, internal/config/config.go:799, and
    /// `preferredScoresFor`, speaker/layer2_controller.go:207, at MetalLB 7938d3f).
    pub fn preference(&self, candidate: &Candidate, node: &NodeInfo) -> i64 {
        candidate
            .scopes
            .iter()
            .map(|s| &self.scopes[*s as usize])
            .filter(|s| s.selects(node))
            .flat_map(|s| &s.preferred)
            .filter(|p| selector_matches(&p.preference, &node.labels))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    /// What announcing `candidate` on `node` means, or `None` if `node` is not eligible.
    pub fn announcement(&self, candidate: &Candidate, node: &NodeInfo) -> Option<Announcement> {
        if node.labels.contains_key(api::LABEL_EXCLUDE_FROM_LB)
            || candidate.only_nodes.as_ref().is_some_and(|only| !only.contains(&node.name))
        {
            return None;
        }
        let mut interfaces: Option<BTreeSet<String>> = Some(BTreeSet::new());
        let mut any = false;
        for scope in candidate.scopes.iter().map(|s| &self.scopes[*s as usize]).filter(|s| s.selects(node)) {
            any = true;
            match (&mut interfaces, scope.interfaces.is_empty()) {
                (_, true) => interfaces = None,
                (Some(set), false) => set.extend(scope.interfaces.iter().cloned()),
                (None, false) => {}
            }
        }
        any.then(|| Announcement {
            ip: candidate.ip,
            pool: candidate.pool.clone(),
            services: candidate.services.clone(),
            interfaces,
        })
    }

    /// Every address `node` may announce.
    pub fn for_node(&self, node: &NodeInfo) -> Vec<Announcement> {
        self.candidates.iter().filter_map(|c| self.announcement(c, node)).collect()
    }
}

/// The addresses `node` announces under `config` for the allocator's `assigned`
/// addresses, sorted by address.
pub fn announcements(config: &Config, assigned: &[ServiceAddresses], node: &NodeInfo) -> Vec<Announcement> {
    Plan::new(config, assigned).for_node(node)
}

/// MetalLB v0.16's `serviceSelectors`: none, every Service; else one of the Services on
/// the address must match one (`l2AdsForService`, speaker/layer2_controller.go:257 at
/// MetalLB 7938d3f).
fn advertises_services(
    adv: &L2Advertisement,
    services: &[String],
    labels: &BTreeMap<String, &BTreeMap<String, String>>,
) -> bool {
    let selectors = &adv.spec.service_selectors;
    selectors.is_empty()
        || services.iter().filter_map(|s| labels.get(s)).any(|l| selectors.iter().any(|sel| selector_matches(sel, l)))
}

pub(super) fn advertises_pool(adv: &L2Advertisement, pool: &Pool) -> bool {
    let spec = &adv.spec;
    (spec.ip_address_pools.is_empty() && spec.ip_address_pool_selectors.is_empty())
        || spec.ip_address_pools.contains(&pool.name)
        || spec.ip_address_pool_selectors.iter().any(|s| selector_matches(s, &pool.labels))
}
