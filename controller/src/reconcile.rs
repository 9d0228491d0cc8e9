//! What the cluster should look like, decided from a snapshot of the API objects: which
//! Service gets which addresses, what to write back, which Events to emit. Pure: the
//! Kubernetes layer ([`crate::k8s`]) takes the snapshot from its watches and makes the
//! writes.
//!
//! Every round re-plans from the Services' current status, so a restarted controller
//! rebuilds its state from what is in use before giving anything new away, and moves
//! nothing that is still valid.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ferrolb_model::api::{self, IPAddressPool, IPAddressPoolStatus, LoadBalancerService};
use ferrolb_model::config::{self, Config, Pool};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use ferrolb_model::allocator::{PoolUsage, SharingProfile, allocate_all_edited};

pub use ferrolb_model::api::ANNOTATION_ALLOCATED_FROM_POOL;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The controller's namespace: pools elsewhere are ignored (with a warning Event).
    pub namespace: String,
    pub lb_class: Option<String>,
}

/// The API objects one round plans from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub pools: Vec<IPAddressPool>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// What the controller remembers between rounds: the last valid version of each pool
/// (an invalid edit keeps the old one serving) and what it last said about each object
/// (so Events mark transitions, not rounds).
#[derive(Debug, Default)]
pub struct Memory {
    last_good: BTreeMap<String, Pool>,
    said: HashMap<String, String>,
    /// Per Service, the ingress this controller last wrote (or found in place).
    written: HashMap<String, Vec<IpAddr>>,
    /// Per Service, a status write planned against this resourceVersion. While the cache
    /// still shows that version, it has not seen the write: the written addresses count
    /// as held, so a cache lagging behind our own writes never moves an address.
    pending: HashMap<String, (Option<String>, Vec<IpAddr>)>,
    /// Per Service, how it shared last round: of two holders that may no longer share,
    /// the one edited moves (MetalLB converges the edited Service, and its `Assign` fails).
    sharing: HashMap<String, Option<SharingProfile>>,
}

/// New status and pool annotation for one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWrite {
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    pub ingress: Vec<IpAddr>,
    /// `None` removes the annotation.
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub regarding: ObjectReference,
    pub kind: EventKind,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolWrite {
    pub name: String,
    pub status: IPAddressPoolStatus,
}

/// The outcome of one round.
#[derive(Debug, Default)]
pub struct Writes {
    pub services: Vec<ServiceWrite>,
    pub events: Vec<EventSpec>,
    pub pools: Vec<PoolWrite>,
    /// Per pool in use, for the allocator metrics.
    pub usage: Vec<(String, PoolUsage)>,
    /// A pool is rejected and an older version (or nothing) serves in its place.
    pub stale: bool,
    /// Services whose ingress another load balancer writes (left alone).
    pub foreign: usize,
}

fn reference(
    kind: &str,
    api_version: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn saturating_i64(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Memory {
    /// Emits `event` unless the same thing was last said about `key` (`topic` separates
    /// independent statements about one object).
    fn say(&mut self, events: &mut Vec<EventSpec>, key: String, event: EventSpec) {
        let said = format!("{}:{}", event.reason, event.note);
        if self.said.get(&key) != Some(&said) {
            self.said.insert(key, said);
            events.push(event);
        }
    }

    fn forget(&mut self, key: &str) {
        self.said.remove(key);
    }
}

/// Plans one round. `memory` carries over to the next.
pub fn plan(snapshot: &Snapshot, settings: &Settings, memory: &mut Memory) -> Writes {
    let mut w = Writes::default();
    let (pools, conditions, unserved) = pools(snapshot, settings, memory, &mut w);
    let services: Vec<(&Service, LoadBalancerService)> =
        snapshot.services.iter().map(|s| (s, LoadBalancerService::from(s))).collect();
    // Addresses from a pool that is invalid with no valid version to fall back on (the pool
    // broke while this controller was not running) stay where they are: a restart must not
    // move an address in use. Unless a valid pool covers them, where allocation keeps them.
    let kept: HashSet<String> = services
        .iter()
        .filter(|(_, s)| {
            s.annotations.get(ANNOTATION_ALLOCATED_FROM_POOL).is_some_and(|p| unserved.contains(p))
                && !s.ingress_ips.is_empty()
                && s.ingress_ips.iter().all(|ip| !pools.iter().any(|p| p.contains(*ip)))
        })
        .map(|(_, s)| s.key())
        .collect();
    // Another load balancer writes these Services' ingress (K3s's ServiceLB left enabled
    // writes node addresses): addresses no pool covers that this controller did not write
    // (no pool annotation, or not what it last wrote). Fighting over the status would
    // flap the Service; it is reported and left alone instead.
    let foreign: HashSet<String> = services
        .iter()
        .filter(|(_, s)| {
            let key = s.key();
            s.is_load_balancer()
                && s.load_balancer_class.as_deref() == settings.lb_class.as_deref()
                && !kept.contains(&key)
                && !s.ingress_ips.is_empty()
                && s.ingress_ips.iter().all(|ip| !pools.iter().any(|p| p.contains(*ip)))
                && (!s.annotations.contains_key(ANNOTATION_ALLOCATED_FROM_POOL)
                    || memory.written.get(&key).is_some_and(|w| *w != s.ingress_ips))
        })
        .map(|(_, s)| s.key())
        .collect();
    w.foreign = foreign.len();
    // One lookup per pending write, not a scan of every Service (a burst leaves
    // thousands of both).
    let versions: HashMap<String, &Option<String>> =
        services.iter().map(|(o, s)| (s.key(), &o.metadata.resource_version)).collect();
    memory.pending.retain(|key, (rv, _)| versions.get(key).is_some_and(|v| *v == rv));
    let mut edited = HashSet::new();
    for (_, s) in &services {
        let profile = SharingProfile::of(s);
        if memory.sharing.get(&s.key()).is_some_and(|before| *before != profile) {
            edited.insert(s.key());
        }
        memory.sharing.insert(s.key(), profile);
    }
    let config = Config {
        pools: pools.clone(),
        l2_advertisements: Vec::new(),
        bgp: Default::default(),
        services: services
            .iter()
            .filter(|(_, s)| s.is_load_balancer() && !kept.contains(&s.key()) && !foreign.contains(&s.key()))
            .map(|(_, s)| {
                let mut s = s.clone();
                if let Some((_, ingress)) = memory.pending.get(&s.key()) {
                    s.ingress_ips = ingress.clone();
                }
                s
            })
            .collect(),
        namespaces: snapshot.namespaces.clone(),
    };
    let allocation = allocate_all_edited(&config, settings.lb_class.as_deref(), &edited);
    let assigned: HashMap<&str, &config::ServiceAddresses> =
        allocation.assigned.iter().map(|a| (a.service.as_str(), a)).collect();
    let failed: HashMap<&str, String> =
        allocation.failed.iter().map(|f| (f.service.as_str(), f.error.to_string())).collect();

    for (obj, svc) in &services {
        let key = svc.key();
        let current_pool = svc.annotations.get(ANNOTATION_ALLOCATED_FROM_POOL).cloned();
        let regarding = reference("Service", "v1", &obj.metadata);
        let ours = svc.load_balancer_class.as_deref() == settings.lb_class.as_deref();
        let (ingress, pool) = if !svc.is_load_balancer() || !ours {
            // No longer ours (type or class changed): clear only what we wrote.
            if current_pool.is_none() {
                memory.forget(&format!("svc:{key}"));
                continue;
            }
            let why = if svc.is_load_balancer() {
                "its loadBalancerClass is not ours"
            } else {
                "it is no longer of type LoadBalancer"
            };
            let note = format!("Released {:?}: {why}", svc.ingress_ips);
            memory.say(
                &mut w.events,
                format!("svc:{key}"),
                EventSpec { regarding: regarding.clone(), kind: EventKind::Normal, reason: "ClearAssignment", note },
            );
            (Vec::new(), None)
        } else if foreign.contains(&key) {
            let note = format!(
                "status.loadBalancer.ingress holds {:?}, which no pool covers and FerroLB did not write: another load \
                 balancer writes it (K3s's ServiceLB? start K3s with --disable=servicelb, or give the Service a \
                 loadBalancerClass). FerroLB leaves this Service alone",
                svc.ingress_ips
            );
            memory.say(
                &mut w.events,
                format!("svc:{key}"),
                EventSpec { regarding, kind: EventKind::Warning, reason: "ForeignIngress", note },
            );
            continue;
        } else if kept.contains(&key) {
            let pool = current_pool.unwrap_or_default();
            let note = format!(
                "Kept {:?}: pool {pool:?} is invalid and there is no valid version of it to check them against; fix the pool",
                svc.ingress_ips
            );
            memory.say(
                &mut w.events,
                format!("svc:{key}"),
                EventSpec { regarding, kind: EventKind::Warning, reason: "AddressesKept", note },
            );
            continue;
        } else if let Some(a) = assigned.get(key.as_str()) {
            if let Some(why) = allocation.cleared.get(&key).filter(|_| svc.ingress_ips != a.addresses) {
                let note = format!(
                    "Released {:?}: {why}; assigned {:?} from pool {:?} instead",
                    svc.ingress_ips, a.addresses, a.pool
                );
                memory.say(
                    &mut w.events,
                    format!("clear:{key}"),
                    EventSpec {
                        regarding: regarding.clone(),
                        kind: EventKind::Normal,
                        reason: "ClearAssignment",
                        note,
                    },
                );
            }
            if let Some(problem) = allocation.warnings.get(&key) {
                let note = format!("invalid requested loadbalancer IPs, {:?} kept: {problem}", a.addresses);
                memory.say(
                    &mut w.events,
                    format!("request:{key}"),
                    EventSpec {
                        regarding: regarding.clone(),
                        kind: EventKind::Warning,
                        reason: "LoadBalancerFailed",
                        note,
                    },
                );
            } else {
                memory.forget(&format!("request:{key}"));
            }
            // Only a change is news: a restart that finds every address in place says nothing.
            if svc.ingress_ips != a.addresses {
                let note = format!("Assigned IP {:?} from pool {:?}", a.addresses, a.pool);
                memory.say(
                    &mut w.events,
                    format!("svc:{key}"),
                    EventSpec { regarding: regarding.clone(), kind: EventKind::Normal, reason: "IPAllocated", note },
                );
            } else {
                memory.forget(&format!("svc:{key}"));
            }
            (a.addresses.clone(), Some(a.pool.clone()))
        } else if let Some(error) = failed.get(key.as_str()) {
            let note = if svc.ingress_ips.is_empty() {
                format!("Failed to allocate IP: {error}")
            } else {
                format!("Failed to allocate IP: {error}; released {:?}", svc.ingress_ips)
            };
            memory.say(
                &mut w.events,
                format!("svc:{key}"),
                EventSpec { regarding: regarding.clone(), kind: EventKind::Warning, reason: "AllocationFailed", note },
            );
            (Vec::new(), None)
        } else {
            continue;
        };
        if ours && svc.is_load_balancer() && legacy_annotation(svc) {
            memory.say(
                &mut w.events,
                format!("legacy:{key}"),
                EventSpec {
                    regarding: regarding.clone(),
                    kind: EventKind::Warning,
                    reason: "DeprecatedAnnotation",
                    note: format!(
                        "the {} annotation prefix is deprecated; use metallb.io/",
                        api::LEGACY_ANNOTATION_PREFIX
                    ),
                },
            );
        }
        if ingress.is_empty() {
            memory.written.remove(&key);
        } else {
            memory.written.insert(key.clone(), ingress.clone());
        }
        if ingress != svc.ingress_ips || pool != current_pool {
            memory.pending.insert(key.clone(), (obj.metadata.resource_version.clone(), ingress.clone()));
            w.services.push(ServiceWrite {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                resource_version: obj.metadata.resource_version.clone(),
                ingress,
                pool,
            });
        }
    }
    // Services gone: forget what we said, so a new one of the same name starts afresh.
    let live: HashSet<String> = services.iter().map(|(_, s)| format!("svc:{}", s.key())).collect();
    memory.said.retain(|k, _| match k.split_once(':') {
        Some(("svc" | "clear" | "request", rest)) => live.contains(&format!("svc:{rest}")),
        _ => true,
    });
    memory.written.retain(|k, _| live.contains(&format!("svc:{k}")));
    memory.sharing.retain(|k, _| live.contains(&format!("svc:{k}")));

    for p in &pools {
        w.usage.push((p.name.clone(), allocation.allocator.usage(&p.name).unwrap_or_default()));
    }
    for obj in snapshot.pools.iter().filter(|o| o.metadata.namespace.as_deref() == Some(&settings.namespace)) {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let usage = allocation.allocator.usage(&name).unwrap_or_default();
        let mut status = obj.status.clone().unwrap_or_default();
        status.assigned_ipv4 = saturating_i64(usage.in_use_v4);
        status.assigned_ipv6 = saturating_i64(usage.in_use_v6);
        status.available_ipv4 = saturating_i64(usage.total_v4 - usage.in_use_v4);
        status.available_ipv6 = saturating_i64(usage.total_v6 - usage.in_use_v6);
        if let Some(c) = conditions.get(&name) {
            status.conditions = c.clone();
        }
        if obj.status.as_ref() != Some(&status) {
            w.pools.push(PoolWrite { name, status });
        }
    }
    w
}

fn legacy_annotation(svc: &LoadBalancerService) -> bool {
    svc.annotations.keys().any(|k| k.starts_with(api::LEGACY_ANNOTATION_PREFIX))
}

fn valid_condition(obj: &IPAddressPool, ok: bool, reason: &str, message: String) -> Condition {
    let previous = obj.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"));
    let status = if ok { "True" } else { "False" };
    Condition {
        type_: "Valid".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: obj.metadata.generation,
        // Unchanged status keeps its transition time, so the status is not rewritten each round.
        last_transition_time: match previous {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(k8s_openapi::jiff::Timestamp::now()),
        },
    }
}

/// The pools this round allocates from: valid ones from our namespace, in age order, each
/// checked against the ones before it; for a rejected one its last valid version, if any.
/// Also each pool's `Valid` condition, and the rejected pools with no version serving.
fn pools(
    snapshot: &Snapshot,
    settings: &Settings,
    memory: &mut Memory,
    w: &mut Writes,
) -> (Vec<Pool>, HashMap<String, Vec<Condition>>, HashSet<String>) {
    let mut conditions = HashMap::new();
    let mut unserved = HashSet::new();
    let mut objects: Vec<&IPAddressPool> = snapshot.pools.iter().collect();
    objects.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp.as_ref(), &b.metadata.name))
    });
    let mut accepted: Vec<Pool> = Vec::new();
    let mut seen = HashSet::new();
    for obj in objects {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let regarding = reference("IPAddressPool", "metallb.io/v1beta1", &obj.metadata);
        let key = format!("pool:{ns}/{name}");
        if ns != settings.namespace {
            let note = format!(
                "ignored: FerroLB reads IPAddressPools only from its own namespace {:?}; move this pool there",
                settings.namespace
            );
            memory.say(
                &mut w.events,
                key,
                EventSpec { regarding, kind: EventKind::Warning, reason: "IgnoredPool", note },
            );
            continue;
        }
        seen.insert(name.clone());
        let (pool, mut issues) = config::pool_from_api(&format!("IPAddressPool {ns}/{name}"), obj);
        let mut problems: Vec<String> = issues.drain(..).map(|i| format!("{}: {}", i.field, i.message)).collect();
        if problems.is_empty() {
            problems.extend(accepted.iter().filter_map(|a| config::overlap(a, &pool)));
        }
        if problems.is_empty() {
            memory.last_good.insert(name.clone(), pool.clone());
            accepted.push(pool);
            conditions.insert(name.clone(), vec![valid_condition(obj, true, "Valid", String::new())]);
            memory.forget(&key);
        } else {
            w.stale = true;
            let fallback = memory
                .last_good
                .get(&name)
                .filter(|old| accepted.iter().all(|a| config::overlap(a, old).is_none()))
                .cloned();
            let serving =
                if fallback.is_some() { "the last valid version keeps serving" } else { "its addresses are not used" };
            let note = format!("invalid: {}; {serving}", problems.join("; "));
            conditions.insert(name.clone(), vec![valid_condition(obj, false, "Invalid", note.clone())]);
            memory.say(
                &mut w.events,
                key,
                EventSpec { regarding, kind: EventKind::Warning, reason: "InvalidPool", note },
            );
            match fallback {
                Some(old) => accepted.push(old),
                None => {
                    unserved.insert(name.clone());
                }
            }
        }
    }
    memory.last_good.retain(|n, _| seen.contains(n));
    (accepted, conditions, unserved)
}

#[cfg(test)]
mod tests;
