//! The configuration model: the multi-document YAML a cluster would hold (IPAddressPools,
//! L2Advertisements, Services, Namespaces, and MetalLB's legacy ConfigMap), validated into
//! a [`Config`], and what one node announces from it ([`announcements`]).
//!
//! Every object in a file counts, whatever its namespace: the file is the configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::Error;
use crate::api::{
    self, ANNOTATION_LOAD_BALANCER_IPS, IPAddressPool, L2Advertisement, LoadBalancerService, selector_matches,
};
use crate::range::{Family, IpRange};

/// A problem with one object: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `file: document N (Kind namespace/name)`.
    pub object: String,
    /// A dotted path into the object, or empty when the whole object is meant.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ranges: Vec<IpRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    /// `spec.serviceAllocation`: which Services the pool serves, and its priority. A pool
    /// with one serves only the Services it matches; `None` serves every Service.
    pub allocation: Option<crate::api::ServiceAllocation>,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// The addresses one Service holds and their pool: what the allocator decides and what
/// [`announcements`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// `namespace/name`.
    pub service: String,
    pub pool: String,
    pub addresses: Vec<IpAddr>,
}

/// A validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub pools: Vec<Pool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    /// Every LoadBalancer Service of the file, in file order. Which are ours (by
    /// `loadBalancerClass`) is the allocator's call.
    pub services: Vec<LoadBalancerService>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// A configuration and the warnings met while loading it.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Issue>,
}

/// Loads the multi-document YAML `text` read from `file`. Warnings (unknown fields,
/// ignored objects, Services that get no address) do not fail the load; errors (bad YAML,
/// bad fields, invalid or overlapping pools) do, all of them reported at once.
pub fn load(file: &str, text: &str) -> Result<Loaded, Error> {
    let mut loader = Loader { file, warnings: Vec::new(), errors: Vec::new() };
    let mut raw = RawObjects::default();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let place = format!("{file}: document {}", index + 1);
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => loader.object(&place, value, &mut raw),
            Err(e) => {
                // The stream cannot be resynchronised after a syntax error: its iterator
                // would yield the same error forever.
                loader.errors.push(Issue { object: place, field: String::new(), message: e.to_string() });
                break;
            }
        }
    }
    let config = loader.validate(raw);
    if loader.errors.is_empty() {
        Ok(Loaded { config, warnings: loader.warnings })
    } else {
        Err(Error::InvalidConfig(loader.errors))
    }
}

#[derive(Default)]
struct RawObjects {
    pools: Vec<(String, IPAddressPool)>,
    l2_advertisements: Vec<(String, L2Advertisement)>,
    /// Services and, at the same index, the place each came from: two vectors, so the
    /// Services move into the configuration without a copy (10,000 of them are megabytes).
    services: Vec<LoadBalancerService>,
    service_objects: Vec<String>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

struct Loader<'a> {
    file: &'a str,
    warnings: Vec<Issue>,
    errors: Vec<Issue>,
}

/// Field names of our CRDs, for "did you mean" hints on unknown fields.
const KNOWN_FIELDS: &[&str] = &[
    "addresses",
    "autoAssign",
    "avoidBuggyIPs",
    "serviceAllocation",
    "priority",
    "namespaces",
    "namespaceSelectors",
    "serviceSelectors",
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "interfaces",
    "loadBalancerIP",
    "loadBalancerClass",
    "externalTrafficPolicy",
    "ipFamilies",
    "ipFamilyPolicy",
];

impl Loader<'_> {
    fn object(&mut self, place: &str, value: Value, raw: &mut RawObjects) {
        let text = |v: &Value, path: &[&str]| -> String {
            let mut v = v;
            for p in path {
                v = &v[*p];
            }
            v.as_str().unwrap_or_default().to_string()
        };
        let api_version = text(&value, &["apiVersion"]);
        let kind = text(&value, &["kind"]);
        let name = text(&value, &["metadata", "name"]);
        let namespace = text(&value, &["metadata", "namespace"]);
        let object = if namespace.is_empty() {
            format!("{place} ({kind} {name})")
        } else {
            format!("{place} ({kind} {namespace}/{name})")
        };
        match (api_version.as_str(), kind.as_str()) {
            ("metallb.io/v1beta1", "IPAddressPool") => {
                if let Some(pool) = self.typed::<IPAddressPool>(&object, value) {
                    raw.pools.push((object, pool));
                }
            }
            ("metallb.io/v1beta1", "L2Advertisement") => {
                if let Some(adv) = self.typed::<L2Advertisement>(&object, value) {
                    let no_pool_choice =
                        adv.spec.ip_address_pools.is_empty() && adv.spec.ip_address_pool_selectors.is_empty();
                    let misspelt_pools =
                        self.warnings.iter().any(|w| w.object == object && w.field.starts_with("spec."));
                    if no_pool_choice && misspelt_pools {
                        self.warn(&object, "spec", "names no pool through ipAddressPools or ipAddressPoolSelectors, so it covers every pool (as MetalLB does)");
                    }
                    raw.l2_advertisements.push((object, adv));
                }
            }
            ("v1", "Service") => {
                if let Some(svc) = self.typed::<Service>(&object, value) {
                    let svc = LoadBalancerService::from(&svc);
                    if svc.is_load_balancer() {
                        raw.services.push(svc);
                        raw.service_objects.push(object);
                    }
                }
            }
            ("v1", "Namespace") => {
                if let Some(ns) = self.typed::<k8s_openapi::api::core::v1::Namespace>(&object, value) {
                    raw.namespaces.insert(ns.metadata.name.unwrap_or_default(), ns.metadata.labels.unwrap_or_default());
                }
            }
            ("v1", "ConfigMap") => self.legacy_config_map(&object, &namespace, &value, raw),
            (v, k) if v.starts_with("metallb.io/") => {
                self.warn(&object, "", &format!("{k} ({v}) is ignored: FerroLB implements MetalLB's layer-2 mode only"))
            }
            ("", _) | (_, "") => self.errors.push(Issue {
                object,
                field: String::new(),
                message: "not a Kubernetes object: apiVersion and kind are required".into(),
            }),
            (v, k) => {
                self.warn(&object, "", &format!("{k} ({v}) is not part of the load balancer configuration; ignored"))
            }
        }
    }

    /// Deserializes `value` as `T`, warning about each unknown field and recording an
    /// error naming the field on failure.
    fn typed<T: DeserializeOwned>(&mut self, object: &str, value: Value) -> Option<T> {
        let mut unknown: Vec<String> = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let de = serde_ignored::Deserializer::new(value, &mut record);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        // kube's derived CRD types take apiVersion and kind as given, without reading them.
        for field in unknown.into_iter().filter(|f| f != "apiVersion" && f != "kind") {
            let leaf = field.rsplit('.').next().unwrap_or(&field);
            let hint = did_you_mean(leaf).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
            self.warn(object, &field, &format!("unknown field, ignored{hint}"));
        }
        match result {
            Ok(t) => Some(t),
            Err(e) => {
                let field = e.path().to_string();
                self.errors.push(Issue { object: object.into(), field, message: e.into_inner().to_string() });
                None
            }
        }
    }

    fn legacy_config_map(&mut self, object: &str, namespace: &str, value: &Value, raw: &mut RawObjects) {
        let Some(text) = value["data"]["config"].as_str() else {
            self.warn(object, "", "ConfigMap without a MetalLB `config` key; ignored");
            return;
        };
        match crate::legacy::convert(namespace, text) {
            Ok(converted) => {
                self.warn(
                    object,
                    "data.config",
                    "legacy MetalLB ConfigMap converted in memory; `ferrolb-controller convert` writes the equivalent IPAddressPool and L2Advertisement objects",
                );
                for w in converted.warnings {
                    self.warn(object, "data.config", &w);
                }
                let from = |kind: &str, name: &str| format!("{object} -> {kind} {name}");
                for p in converted.pools {
                    raw.pools.push((from("IPAddressPool", p.metadata.name.as_deref().unwrap_or_default()), p));
                }
                for a in converted.l2_advertisements {
                    raw.l2_advertisements
                        .push((from("L2Advertisement", a.metadata.name.as_deref().unwrap_or_default()), a));
                }
            }
            Err(e) => {
                self.errors.push(Issue { object: object.into(), field: "data.config".into(), message: e.to_string() })
            }
        }
    }

    fn warn(&mut self, object: &str, field: &str, message: &str) {
        self.warnings.push(Issue { object: object.into(), field: field.into(), message: message.into() });
    }

    fn validate(&mut self, raw: RawObjects) -> Config {
        let mut config = Config { namespaces: raw.namespaces, ..Config::default() };
        let mut pool_objects = Vec::new();
        for (object, pool) in raw.pools {
            let name = pool.metadata.name.clone().unwrap_or_default();
            if let Some(prev) = config.pools.iter().position(|p: &Pool| p.name == name) {
                self.errors.push(Issue {
                    object,
                    field: "metadata.name".into(),
                    message: format!("a pool named {name:?} is already defined by {}", pool_objects[prev]),
                });
                continue;
            }
            let (valid, issues) = pool_from_api(&object, &pool);
            self.errors.extend(issues);
            config.pools.push(valid);
            pool_objects.push(object);
        }
        self.reject_overlaps(&config.pools, &pool_objects);

        for (object, adv) in &raw.l2_advertisements {
            for (i, name) in adv.spec.ip_address_pools.iter().enumerate() {
                if !config.pools.iter().any(|p| &p.name == name) {
                    self.warn(object, &format!("spec.ipAddressPools[{i}]"), &format!("no pool named {name:?}"));
                }
            }
        }
        if raw.l2_advertisements.is_empty() && !config.pools.is_empty() {
            self.warn(self.file, "", "no L2Advertisement: addresses are assigned but not announced (as in MetalLB)");
        }
        config.l2_advertisements = raw.l2_advertisements.into_iter().map(|(_, a)| a).collect();

        for (object, svc) in raw.service_objects.iter().zip(&raw.services) {
            // A bad request fails that Service (the allocator says why), not the file.
            match requested_ips(svc) {
                Err((field, message)) => self.warn(object, &field, &message),
                Ok((_, field)) if field.contains(api::LEGACY_ANNOTATION_PREFIX) => self.warn(
                    object,
                    &field,
                    "the metallb.universe.tf/ annotation prefix is deprecated; use metallb.io/",
                ),
                Ok(_) => {}
            }
        }
        config.services = raw.services;
        config.services.shrink_to_fit();
        config
    }

    /// Overlapping pools are rejected: one address must have one pool. Sorting makes
    /// this O(n log n) in the number of ranges. (The controller, which sees pools one at
    /// a time, uses [`overlap`].)
    fn reject_overlaps(&mut self, pools: &[Pool], objects: &[String]) {
        let mut all: Vec<(IpRange, usize)> =
            pools.iter().enumerate().flat_map(|(i, p)| p.ranges.iter().map(move |r| (*r, i))).collect();
        all.sort();
        for pair in all.windows(2) {
            let ((a, ai), (b, bi)) = (pair[0], pair[1]);
            // Within one pool, `pool_from_api` has said so already.
            if a.overlaps(&b) && ai != bi {
                let message = format!("range {b} overlaps range {a} of pool {:?} ({})", pools[ai].name, objects[ai]);
                self.errors.push(Issue { object: objects[bi].clone(), field: "spec.addresses".into(), message });
            }
        }
    }
}

/// A pool as the allocator uses it, from its API object, with every problem found (`object`
/// names it in the issues). The pool is usable only if there are none.
pub fn pool_from_api(object: &str, pool: &IPAddressPool) -> (Pool, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut ranges = Vec::new();
    for (i, a) in pool.spec.addresses.iter().enumerate() {
        match a.parse::<IpRange>() {
            Ok(r) => ranges.push(r),
            Err(e) => issues.push(Issue {
                object: object.to_string(),
                field: format!("spec.addresses[{i}]"),
                message: e.to_string(),
            }),
        }
    }
    if pool.spec.addresses.is_empty() {
        issues.push(Issue {
            object: object.to_string(),
            field: "spec.addresses".into(),
            message: "a pool needs at least one address range".into(),
        });
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if a.overlaps(b) {
                issues.push(Issue {
                    object: object.to_string(),
                    field: "spec.addresses".into(),
                    message: format!("ranges {a} and {b} overlap"),
                });
            }
        }
    }
    let valid = Pool {
        name: pool.metadata.name.clone().unwrap_or_default(),
        namespace: pool.metadata.namespace.clone().unwrap_or_default(),
        labels: pool.metadata.labels.clone().unwrap_or_default(),
        ranges,
        auto_assign: pool.spec.auto_assign(),
        avoid_buggy_ips: pool.spec.avoid_buggy_ips(),
        allocation: pool.spec.service_allocation.clone(),
    };
    (valid, issues)
}

/// The first range of `b` that overlaps a range of `a`, described.
pub fn overlap(a: &Pool, b: &Pool) -> Option<String> {
    a.ranges.iter().find_map(|ra| {
        b.ranges
            .iter()
            .find(|rb| ra.overlaps(rb))
            .map(|rb| format!("range {rb} overlaps range {ra} of pool {:?}", a.name))
    })
}

/// The addresses a Service asks for (annotation or `spec.loadBalancerIP`) and the field
/// it asked through, or the field and what is wrong with it. As MetalLB's
/// `getDesiredLbIPs` (`controller/service.go`): an empty annotation is unset, both set is
/// an error, and the annotation holds one address or two of different families.
pub fn requested_ips(svc: &LoadBalancerService) -> Result<(Vec<IpAddr>, String), (String, String)> {
    let annotation = svc.annotation(ANNOTATION_LOAD_BALANCER_IPS).filter(|(v, _)| !v.is_empty());
    if let Some((list, legacy)) = annotation {
        let name = if legacy {
            ANNOTATION_LOAD_BALANCER_IPS.replacen("metallb.io/", api::LEGACY_ANNOTATION_PREFIX, 1)
        } else {
            ANNOTATION_LOAD_BALANCER_IPS.to_string()
        };
        let field = format!("metadata.annotations[{name:?}]");
        if svc.load_balancer_ip.is_some() {
            return Err((field, "is set together with spec.loadBalancerIP: set one of them".into()));
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for part in list.split(',').map(str::trim) {
            let ip = part.parse().map_err(|_| (field.clone(), format!("{part:?} is not an IP address")))?;
            if ips.iter().any(|i| Family::of(*i) == Family::of(ip)) {
                return Err((field, "at most one address per family".into()));
            }
            ips.push(ip);
        }
        return Ok((ips, field));
    }
    let field = "spec.loadBalancerIP".to_string();
    match &svc.load_balancer_ip {
        Some(ip) => match ip.trim().parse() {
            Ok(ip) => Ok((vec![ip], field)),
            Err(_) => Err((field, format!("{ip:?} is not an IP address"))),
        },
        None => Ok((Vec::new(), field)),
    }
}

fn did_you_mean(field: &str) -> Option<&'static str> {
    let f = field.to_ascii_lowercase();
    KNOWN_FIELDS
        .iter()
        .map(|k| (edit_distance(&f, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

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
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| selector_matches(s, &node.labels))
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
        Plan { scopes, candidates }
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

fn advertises_pool(adv: &L2Advertisement, pool: &Pool) -> bool {
    let spec = &adv.spec;
    (spec.ip_address_pools.is_empty() && spec.ip_address_pool_selectors.is_empty())
        || spec.ip_address_pools.contains(&pool.name)
        || spec.ip_address_pool_selectors.iter().any(|s| selector_matches(s, &pool.labels))
}

#[cfg(test)]
mod tests;
