//! The allocator: which addresses each LoadBalancer Service gets. Pure and deterministic:
//! the same pools and Services in the same order give the same result on every machine.
//!
//! Each pool keeps, per family, its free addresses as disjoint intervals in a `BTreeMap`,
//! so taking the first free address, reserving a requested one and releasing one are
//! O(log n) in the number of intervals, and a /64 costs memory only for what is taken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use crate::api::ServicePort;
use crate::api::{ANNOTATION_ADDRESS_POOL, ANNOTATION_ALLOW_SHARED_IP, LoadBalancerService, selector_matches};
use crate::config::{Pool, requested_ips};
use crate::range::{Family, IpRange, ip_to_u128, is_buggy_ip, u128_to_ip};
use crate::served;

/// Why a Service got no address. Messages name the pool, address or rule involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("the Service has no cluster IP, so its IP family is unknown")]
    NoClusterIp,
    #[error("cannot tell the Service's IP families from its cluster IPs {0:?}")]
    ClusterFamilies(Vec<IpAddr>),
    #[error("ipFamilyPolicy is RequireDualStack but the Service has one cluster IP: the cluster is not dual-stack")]
    NotDualStackCluster,
    #[error("the requested {requested:?} do not match the Service's IP families ({service})")]
    RequestedFamily { requested: Vec<IpAddr>, service: String },
    #[error("{ip} is in no pool")]
    NotInAnyPool { ip: IpAddr },
    #[error("{ips:?} are not all in one pool")]
    SplitPools { ips: Vec<IpAddr> },
    #[error(
        "pool {pool:?} does not serve this Service: its serviceAllocation does not match the Service's namespace or labels"
    )]
    Excluded { pool: String },
    #[error("{ip} is in pool {pool:?}, not in the requested pool {wanted:?}")]
    WrongPool { ip: IpAddr, pool: String, wanted: String },
    #[error("{ip} is not assignable: pool {pool:?} avoids buggy IPs (.0 and .255)")]
    BuggyIp { ip: IpAddr, pool: String },
    #[error("{ip} is already used by {holder} and {reason}")]
    InUse { ip: IpAddr, holder: String, reason: String },
    #[error("no pool named {0:?}")]
    NoSuchPool(String),
    #[error("no pool has a free {families} address for this Service")]
    Exhausted { families: String },
    #[error("pool {pool:?} has no free {families} address for this Service")]
    PoolExhausted { pool: String, families: String },
    #[error("RequireDualStack, but pool {0:?} has only one family")]
    NotDualStack(String),
}

/// Free addresses of one `spec.addresses` entry.
#[derive(Debug, Clone, Default)]
struct FreeSet {
    /// start -> end, inclusive, disjoint and not adjacent.
    intervals: BTreeMap<u128, u128>,
}

impl FreeSet {
    fn new(r: IpRange) -> FreeSet {
        FreeSet { intervals: BTreeMap::from([(r.start, r.end)]) }
    }

    /// Removes `n` if it is free.
    fn take(&mut self, n: u128) -> bool {
        let Some((&start, &end)) = self.intervals.range(..=n).next_back() else {
            return false;
        };
        if end < n {
            return false;
        }
        self.intervals.remove(&start);
        if start < n {
            self.intervals.insert(start, n - 1);
        }
        if n < end {
            self.intervals.insert(n + 1, end);
        }
        true
    }

    /// The lowest free address, skipping .0 and .255 when `avoid_buggy`. Intervals holding
    /// only such addresses (at most two long: x.255, x+1.0) can never be given out, so they
    /// are dropped for good and the cost stays logarithmic.
    fn first(&mut self, family: Family, avoid_buggy: bool) -> Option<u128> {
        loop {
            let (&start, &end) = self.intervals.iter().next()?;
            let usable = (start..=end.min(start.saturating_add(2)))
                .find(|n| !(avoid_buggy && is_buggy_ip(u128_to_ip(family, *n))));
            match usable {
                Some(n) => return Some(n),
                None => {
                    self.intervals.remove(&start);
                }
            }
        }
    }

    fn release(&mut self, n: u128) {
        let (mut start, mut end) = (n, n);
        if let Some((&s, &e)) = self.intervals.range(..=n).next_back() {
            if e >= n {
                return;
            }
            if e.checked_add(1) == Some(n) {
                self.intervals.remove(&s);
                start = s;
            }
        }
        if let Some(next) = n.checked_add(1)
            && let Some(e) = self.intervals.remove(&next)
        {
            end = e;
        }
        self.intervals.insert(start, end);
    }
}

/// One entry of a pool's `spec.addresses`, in the order written: MetalLB walks a pool's
/// CIDRs in that order (`getFreeIPsFromPool`, `internal/allocator/allocator.go`).
#[derive(Debug, Clone)]
struct Block {
    range: IpRange,
    free: FreeSet,
}

#[derive(Debug, Clone)]
struct PoolState {
    pool: Pool,
    blocks: Vec<Block>,
    in_use_v4: u128,
    in_use_v6: u128,
}

impl PoolState {
    fn has_family(&self, family: Family) -> bool {
        self.pool.ranges.iter().any(|r| r.family == family)
    }

    fn block_of(&mut self, ip: IpAddr) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|b| b.range.contains(ip))
    }

    fn in_use(&mut self, family: Family) -> &mut u128 {
        match family {
            Family::V4 => &mut self.in_use_v4,
            Family::V6 => &mut self.in_use_v6,
        }
    }

    /// Addresses of `family` that can be given out: without .0 and .255 when the pool
    /// avoids them (MetalLB's `poolCount` subtracts them too).
    fn capacity(&self, family: Family) -> u128 {
        self.pool
            .ranges
            .iter()
            .filter(|r| r.family == family)
            .map(|r| {
                let buggy = if self.pool.avoid_buggy_ips && family == Family::V4 { buggy_count(r) } else { 0 };
                r.size().saturating_sub(buggy)
            })
            .fold(0u128, u128::saturating_add)
    }
}

/// How many IPv4 addresses of `r` end in .0 or .255.
fn buggy_count(r: &IpRange) -> u128 {
    // Addresses <= n ending in .0 or .255.
    let upto = |n: u128| 2 * (n / 256) + 1 + u128::from(n % 256 == 255);
    upto(r.end) - if r.start == 0 { 0 } else { upto(r.start - 1) }
}

/// What address sharing needs to know of a Service (MetalLB's `key` and ports,
/// `internal/allocator/allocator.go` `sharingOK`, `checkSharing`): only Services with an
/// `allow-shared-ip` key have one, so holders stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingProfile {
    key: String,
    ports: Vec<ServicePort>,
    /// MetalLB's backend key (`k8salloc.BackendKey`): the selector when
    /// `externalTrafficPolicy` is Local, else empty.
    backend: String,
}

impl SharingProfile {
    pub fn of(svc: &LoadBalancerService) -> Option<SharingProfile> {
        let (key, _) = svc.annotation(ANNOTATION_ALLOW_SHARED_IP)?;
        (!key.is_empty()).then(|| SharingProfile {
            key: key.to_string(),
            ports: svc.ports.clone(),
            backend: if svc.external_traffic_policy.as_deref() == Some("Local") {
                svc.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            } else {
                String::new()
            },
        })
    }
}

/// Why a Service with profile `a` may not share an address with one with profile `b`, or
/// `None` if it may: the same key, the same backend key, and no common port.
pub fn sharing_conflict(a: Option<&SharingProfile>, b: Option<&SharingProfile>) -> Option<String> {
    let (Some(a), Some(b)) = (a, b) else {
        return Some(format!("the two do not have the same {ANNOTATION_ALLOW_SHARED_IP} key"));
    };
    if a.key != b.key {
        return Some(format!("the two do not have the same {ANNOTATION_ALLOW_SHARED_IP} key"));
    }
    if a.backend != b.backend {
        return Some("with externalTrafficPolicy Local on either, both must be Local and select the same pods".into());
    }
    if let Some(p) = a.ports.iter().find(|p| b.ports.contains(p)) {
        return Some(format!("both use port {}/{}", p.port, p.protocol));
    }
    None
}

/// A Service holding an address.
#[derive(Debug, Clone)]
struct Holder {
    key: String,
    sharing: Option<SharingProfile>,
}

/// Counters of one pool, for `IPAddressPool.status` and the allocator metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    pub total_v4: u128,
    pub total_v6: u128,
    pub in_use_v4: u128,
    pub in_use_v6: u128,
}

/// The allocator's state: pools and who holds what.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    /// By name: where MetalLB iterates a map (in random order), FerroLB goes by name.
    pools: Vec<PoolState>,
    holders: BTreeMap<IpAddr, Vec<Holder>>,
    by_service: HashMap<String, Vec<IpAddr>>,
}

/// What a Service was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub addresses: Vec<IpAddr>,
    pub pool: String,
}

/// The result of [`Allocator::converge`]: MetalLB's `convergeBalancer` for one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Assignment, AllocError>,
    /// Why the addresses in the Service's status were given up (MetalLB's
    /// `ClearAssignment`), when they were.
    pub cleared: Option<String>,
    /// The addresses are kept, but the Service's request is invalid (MetalLB keeps them
    /// and reports `LoadBalancerFailed`, `controller/service.go`).
    pub warning: Option<AllocError>,
}

/// The IP families a Service wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    One(Family),
    Dual { primary: Family },
}

fn other(f: Family) -> Family {
    match f {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// The families of a set of addresses (MetalLB's `ipfamily.ForAddresses`): one address,
/// or two of different families.
fn family_of(ips: &[IpAddr]) -> Option<Want> {
    match ips {
        [a] => Some(Want::One(Family::of(*a))),
        [a, b] if Family::of(*a) != Family::of(*b) => Some(Want::Dual { primary: Family::of(*a) }),
        _ => None,
    }
}

/// The families the Service wants: those of its cluster IPs, as MetalLB reads them
/// (`ipfamily.ForService`), IPv6 first when `ipFamilies` says so (`findBestPoolForService`).
/// A file has no API server to fill them in: there `ipFamilies`, else those of the
/// addresses it asks for or holds (`implied`), else IPv4 for single stack and both for the
/// dual-stack policies.
fn wanted(svc: &LoadBalancerService, implied: &[IpAddr]) -> Result<Want, AllocError> {
    let families = match served::service_families(svc) {
        Some(families) => families,
        None => match family_of(implied) {
            Some(w) => return Ok(w),
            None => served::default_families(svc),
        },
    };
    match families.as_slice() {
        [f] => Ok(Want::One(*f)),
        [a, b] if a != b => Ok(Want::Dual { primary: served::declared_families(svc).first().copied().unwrap_or(*a) }),
        _ => Err(AllocError::ClusterFamilies(svc.cluster_ips.clone())),
    }
}

fn want_name(w: Want) -> String {
    match w {
        Want::One(f) => family_name(f).into(),
        Want::Dual { .. } => "IPv4+IPv6".into(),
    }
}

/// IPv4 first, as MetalLB writes status (`selectIPsForFamilyAndPolicy`, `allocation.go`).
fn v4_first(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips
}

impl Allocator {
    pub fn new(pools: &[Pool]) -> Allocator {
        let mut pools: Vec<PoolState> = pools
            .iter()
            .map(|p| PoolState {
                pool: p.clone(),
                blocks: p.ranges.iter().map(|r| Block { range: *r, free: FreeSet::new(*r) }).collect(),
                in_use_v4: 0,
                in_use_v6: 0,
            })
            .collect();
        pools.sort_by(|a, b| a.pool.name.cmp(&b.pool.name));
        Allocator { pools, holders: BTreeMap::new(), by_service: HashMap::new() }
    }

    fn pool_of(&self, ip: IpAddr) -> Option<usize> {
        self.pools.iter().position(|p| p.pool.contains(ip))
    }

    /// The addresses `key` holds now.
    pub fn addresses_of(&self, key: &str) -> &[IpAddr] {
        self.by_service.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn usage(&self, pool: &str) -> Option<PoolUsage> {
        let p = self.pools.iter().find(|p| p.pool.name == pool)?;
        Some(PoolUsage {
            total_v4: p.capacity(Family::V4),
            total_v6: p.capacity(Family::V6),
            in_use_v4: p.in_use_v4,
            in_use_v6: p.in_use_v6,
        })
    }

    /// [`Allocator::converge`]'s result alone.
    pub fn assign(
        &mut self,
        svc: &LoadBalancerService,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Result<Assignment, AllocError> {
        self.converge(svc, namespace_labels).result
    }

    /// Gives `svc` its addresses as MetalLB's `convergeBalancer` (`controller/service.go`)
    /// does: the ones in its status while the pools, the Service's families, its requested
    /// pool and addresses and its sharing still allow them; else the requested addresses;
    /// else free ones from the requested pool or the best pool. `namespace_labels` serves
    /// the pools' namespace selectors.
    pub fn converge(&mut self, svc: &LoadBalancerService, namespace_labels: &BTreeMap<String, String>) -> Outcome {
        self.converge_or_defer(svc, namespace_labels, false).expect("not deferred")
    }

    /// [`Allocator::converge`]; with `keep_only`, `None` instead of allocating anything
    /// new, so that every address still validly held is taken before any is given out.
    fn converge_or_defer(
        &mut self,
        svc: &LoadBalancerService,
        namespace_labels: &BTreeMap<String, String>,
        keep_only: bool,
    ) -> Option<Outcome> {
        let key = svc.key();
        self.release(&key);
        let mut held: Vec<IpAddr> = Vec::new();
        for ip in &svc.ingress_ips {
            if !held.contains(ip) {
                held.push(*ip);
            }
        }
        let mut out = Outcome { result: Err(AllocError::NoClusterIp), cleared: None, warning: None };
        let fail = |mut out: Outcome, e: AllocError| {
            if !held.is_empty() && out.cleared.is_none() {
                out.cleared = Some(e.to_string());
            }
            out.result = Err(e);
            out
        };
        let request = requested_ips(svc);
        let implied = match &request {
            Ok((ips, _)) if !ips.is_empty() => ips.clone(),
            _ => held.clone(),
        };
        let want = match wanted(svc, &implied) {
            Ok(w) => w,
            Err(e) => return Some(fail(out, e)),
        };
        let policy = svc.ip_family_policy.as_deref().unwrap_or("SingleStack");
        if policy == "RequireDualStack" && !matches!(want, Want::Dual { .. }) {
            return Some(fail(out, AllocError::NotDualStackCluster));
        }
        let wanted_pool = svc.annotation(ANNOTATION_ADDRESS_POOL).map(|(p, _)| p.to_string()).filter(|p| !p.is_empty());
        // What is held survives only what MetalLB checks, in its order.
        let mut kept: Option<usize> = None;
        if !held.is_empty() {
            out.cleared = match family_of(&held) {
                None => Some(format!("cannot tell the IP family of {held:?}")),
                Some(h) if family_changed(h, want, policy) => {
                    Some(format!("{held:?} do not match the Service's IP families ({})", want_name(want)))
                }
                Some(_) => match self.check(svc, &held, namespace_labels) {
                    Err(e) => Some(format!("{held:?} are not allowed by the configuration: {e}")),
                    Ok(idx) => match &wanted_pool {
                        Some(w) if *w != self.pools[idx].pool.name => Some(format!(
                            "pool {w:?} is requested, and {held:?} are in pool {:?}",
                            self.pools[idx].pool.name
                        )),
                        _ => {
                            kept = Some(idx);
                            None
                        }
                    },
                },
            };
        }
        let requested = match request {
            Ok((ips, _)) => ips,
            Err((field, message)) => {
                let e = AllocError::BadRequest { field, message };
                let Some(idx) = kept else { return Some(fail(out, e)) };
                self.hold_all(&key, svc, &held);
                out.result = Ok(Assignment { addresses: held, pool: self.pools[idx].pool.name.clone() });
                out.warning = Some(e);
                return Some(out);
            }
        };
        if kept.is_some() && !requested.is_empty() && !same_set(&held, &requested) {
            out.cleared = Some(format!("{requested:?} are requested instead of {held:?}"));
            kept = None;
        }
        out.result = match kept {
            Some(idx) => {
                let mut ips = held.clone();
                if ips.len() == 1 && policy == "PreferDualStack" && matches!(want, Want::Dual { .. }) {
                    // The pool may have gained the other family (`AllocateFromPoolForAdditionalFamily`).
                    if let Some(extra) = self.first_usable(idx, other(Family::of(ips[0])), svc) {
                        ips = v4_first(vec![ips[0], extra]);
                    }
                }
                self.hold_all(&key, svc, &ips);
                Ok(Assignment { addresses: ips, pool: self.pools[idx].pool.name.clone() })
            }
            None if keep_only => return None,
            None => self.allocate(svc, want, policy, &requested, wanted_pool.as_deref(), namespace_labels),
        };
        if out.result.is_err() {
            let e = out.result.clone().unwrap_err();
            return Some(fail(out, e));
        }
        Some(out)
    }

    /// MetalLB's `allocateIPs`: the requested addresses, else from the requested pool,
    /// else from the best pool.
    fn allocate(
        &mut self,
        svc: &LoadBalancerService,
        want: Want,
        policy: &str,
        requested: &[IpAddr],
        wanted_pool: Option<&str>,
        ns_labels: &BTreeMap<String, String>,
    ) -> Result<Assignment, AllocError> {
        let key = svc.key();
        if !requested.is_empty() {
            let same = match (family_of(requested), want) {
                (Some(Want::One(a)), Want::One(b)) => a == b,
                (Some(Want::Dual { .. }), Want::Dual { .. }) => true,
                _ => false,
            };
            if !same {
                return Err(AllocError::RequestedFamily { requested: requested.to_vec(), service: want_name(want) });
            }
            let idx = self.check(svc, requested, ns_labels)?;
            let pool = self.pools[idx].pool.name.clone();
            if let Some(w) = wanted_pool.filter(|w| *w != pool) {
                return Err(AllocError::WrongPool { ip: requested[0], pool, wanted: w.to_string() });
            }
            self.hold_all(&key, svc, requested);
            return Ok(Assignment { addresses: requested.to_vec(), pool });
        }
        let chosen = match wanted_pool {
            Some(w) => {
                let idx = self
                    .pools
                    .iter()
                    .position(|p| p.pool.name == w)
                    .ok_or_else(|| AllocError::NoSuchPool(w.to_string()))?;
                if !serves(&self.pools[idx].pool, svc, ns_labels) {
                    return Err(AllocError::Excluded { pool: w.to_string() });
                }
                let v4 = self.first_usable(idx, Family::V4, svc);
                let v6 = self.first_usable(idx, Family::V6, svc);
                match select(want, policy, v4, v6) {
                    Some(ips) => (idx, ips),
                    None if matches!(want, Want::Dual { .. })
                        && policy != "PreferDualStack"
                        && !(self.pools[idx].has_family(Family::V4) && self.pools[idx].has_family(Family::V6)) =>
                    {
                        return Err(AllocError::NotDualStack(w.to_string()));
                    }
                    None => return Err(AllocError::PoolExhausted { pool: w.to_string(), families: want_name(want) }),
                }
            }
            None => self.auto(svc, want, policy, ns_labels)?,
        };
        let (idx, ips) = chosen;
        self.hold_all(&key, svc, &ips);
        Ok(Assignment { addresses: ips, pool: self.pools[idx].pool.name.clone() })
    }

    /// MetalLB's `Allocate`: first the pools whose `serviceAllocation` matches the Service
    /// (`pinnedPoolsForService`, by priority, unset or 0 last: `sortPools`), then the pools
    /// without one. Pools with `autoAssign: false` only by name or address.
    fn auto(
        &mut self,
        svc: &LoadBalancerService,
        want: Want,
        policy: &str,
        ns_labels: &BTreeMap<String, String>,
    ) -> Result<(usize, Vec<IpAddr>), AllocError> {
        let mut pinned: Vec<usize> = (0..self.pools.len())
            .filter(|&i| {
                let p = &self.pools[i].pool;
                p.auto_assign && p.allocation.is_some() && serves(p, svc, ns_labels)
            })
            .collect();
        // Stable: equal priorities stay in name order.
        pinned.sort_by_key(|&i| match self.pools[i].pool.allocation.as_ref().and_then(|a| a.priority) {
            Some(p) if p > 0 => (0, p),
            _ => (1, 0),
        });
        let open: Vec<usize> = (0..self.pools.len())
            .filter(|&i| self.pools[i].pool.auto_assign && self.pools[i].pool.allocation.is_none())
            .collect();
        for group in [pinned, open] {
            if let Some(found) = self.best(&group, svc, want, policy) {
                return Ok(found);
            }
        }
        Err(AllocError::Exhausted { families: want_name(want) })
    }

    /// MetalLB's `findBestPoolForService`: the first pool with every family wanted; for
    /// PreferDualStack, else the first with the primary family, else the first with the
    /// other.
    fn best(
        &mut self,
        group: &[usize],
        svc: &LoadBalancerService,
        want: Want,
        policy: &str,
    ) -> Option<(usize, Vec<IpAddr>)> {
        let (mut primary, mut secondary) = (None, None);
        for &idx in group {
            let p = match want {
                Want::One(f) => match self.first_usable(idx, f, svc) {
                    Some(ip) => return Some((idx, vec![ip])),
                    None => continue,
                },
                Want::Dual { primary } => primary,
            };
            let v4 = self.first_usable(idx, Family::V4, svc);
            let v6 = self.first_usable(idx, Family::V6, svc);
            let pick = |f: Family| if f == Family::V4 { v4 } else { v6 };
            if let (Some(a), Some(b)) = (v4, v6) {
                return Some((idx, vec![a, b]));
            }
            if policy != "PreferDualStack" {
                continue;
            }
            if primary.is_none()
                && let Some(ip) = pick(p)
            {
                primary = Some((idx, vec![ip]));
            }
            if secondary.is_none()
                && let Some(ip) = pick(other(p))
            {
                secondary = Some((idx, vec![ip]));
            }
        }
        primary.or(secondary)
    }

    /// The first address of `family` in pool `idx` that `svc` may take, walking the pool's
    /// entries in order: free, or held by Services it may share with (MetalLB's
    /// `getIPFromCIDR` with `checkSharing`).
    fn first_usable(&mut self, idx: usize, family: Family, svc: &LoadBalancerService) -> Option<IpAddr> {
        let profile = SharingProfile::of(svc);
        let key = svc.key();
        let avoid = self.pools[idx].pool.avoid_buggy_ips;
        let holders = &self.holders;
        for block in self.pools[idx].blocks.iter_mut().filter(|b| b.range.family == family) {
            let free = block.free.first(family, avoid).map(|n| u128_to_ip(family, n));
            // Sharing candidates are found by scanning holders: fine for the few Services
            // that share; an index by sharing key would make it logarithmic.
            let shared = profile.as_ref().and_then(|p| {
                let (lo, hi) = (u128_to_ip(family, block.range.start), u128_to_ip(family, block.range.end));
                holders
                    .range(lo..=hi)
                    .find(|(ip, hs)| {
                        !(avoid && is_buggy_ip(**ip))
                            && hs
                                .iter()
                                .all(|h| h.key == key || sharing_conflict(Some(p), h.sharing.as_ref()).is_none())
                    })
                    .map(|(ip, _)| *ip)
            });
            let best = match (free, shared) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// MetalLB's `Assign` checks for explicit addresses: one pool holds them all, it serves
    /// the Service (`isPoolCompatibleWithService`; `autoAssign` does not matter), and the
    /// Services already on them allow sharing. The pool's index.
    fn check(
        &self,
        svc: &LoadBalancerService,
        ips: &[IpAddr],
        ns_labels: &BTreeMap<String, String>,
    ) -> Result<usize, AllocError> {
        let first = *ips.first().ok_or(AllocError::NoClusterIp)?;
        let idx = self.pool_of(first).ok_or(AllocError::NotInAnyPool { ip: first })?;
        let p = &self.pools[idx].pool;
        for &ip in ips {
            if !p.contains(ip) {
                return Err(match self.pool_of(ip) {
                    None => AllocError::NotInAnyPool { ip },
                    Some(_) => AllocError::SplitPools { ips: ips.to_vec() },
                });
            }
            if p.avoid_buggy_ips && is_buggy_ip(ip) {
                return Err(AllocError::BuggyIp { ip, pool: p.name.clone() });
            }
        }
        if !serves(p, svc, ns_labels) {
            return Err(AllocError::Excluded { pool: p.name.clone() });
        }
        let profile = SharingProfile::of(svc);
        let key = svc.key();
        for &ip in ips {
            if let Some((holder, reason)) = self.holders.get(&ip).into_iter().flatten().find_map(|h| {
                (h.key != key)
                    .then(|| sharing_conflict(profile.as_ref(), h.sharing.as_ref()).map(|r| (h.key.clone(), r)))
                    .flatten()
            }) {
                return Err(AllocError::InUse { ip, holder, reason });
            }
        }
        Ok(idx)
    }

    fn hold_all(&mut self, key: &str, svc: &LoadBalancerService, ips: &[IpAddr]) {
        let profile = SharingProfile::of(svc);
        for &ip in ips {
            let holders = self.holders.entry(ip).or_default();
            if holders.is_empty()
                && let Some(idx) = self.pools.iter().position(|p| p.pool.contains(ip))
            {
                let p = &mut self.pools[idx];
                if let Some(b) = p.block_of(ip) {
                    b.free.take(ip_to_u128(ip));
                }
                *p.in_use(Family::of(ip)) += 1;
            }
            holders.push(Holder { key: key.to_string(), sharing: profile.clone() });
        }
        self.by_service.insert(key.to_string(), ips.to_vec());
    }

    /// Frees what `key` holds; an address still shared by others stays taken.
    pub fn release(&mut self, key: &str) {
        for ip in self.by_service.remove(key).unwrap_or_default() {
            let Some(hs) = self.holders.get_mut(&ip) else {
                continue;
            };
            hs.retain(|h| h.key != key);
            if hs.is_empty() {
                self.holders.remove(&ip);
                if let Some(idx) = self.pool_of(ip) {
                    let p = &mut self.pools[idx];
                    if let Some(b) = p.block_of(ip) {
                        b.free.release(ip_to_u128(ip));
                    }
                    let n = p.in_use(Family::of(ip));
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
}

/// MetalLB's `serviceFamilyChanged` (`controller/service.go`): held addresses must have
/// the Service's families, except that a dual-stack PreferDualStack Service may hold one.
fn family_changed(held: Want, want: Want, policy: &str) -> bool {
    let same = matches!((held, want), (Want::One(a), Want::One(b)) if a == b)
        || matches!((held, want), (Want::Dual { .. }, Want::Dual { .. }));
    !(same || (matches!(want, Want::Dual { .. }) && policy == "PreferDualStack"))
}

/// MetalLB's `selectIPsForFamilyAndPolicy` (`internal/allocator/allocation.go`).
fn select(want: Want, policy: &str, v4: Option<IpAddr>, v6: Option<IpAddr>) -> Option<Vec<IpAddr>> {
    match (want, v4, v6) {
        (Want::One(Family::V4), Some(a), _) | (Want::One(Family::V6), _, Some(a)) => Some(vec![a]),
        (Want::Dual { .. }, Some(a), Some(b)) => Some(vec![a, b]),
        (Want::Dual { .. }, a, b) if policy == "PreferDualStack" => a.or(b).map(|ip| vec![ip]),
        _ => None,
    }
}

/// The same addresses, in any order (MetalLB's `isEqualIPs`).
fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Whether a pool's `serviceAllocation` admits the Service (MetalLB's
/// `isPoolCompatibleWithService`): its namespace is listed or selected, and its labels
/// match a service selector, where either is given. No `serviceAllocation` admits all.
fn serves(pool: &Pool, svc: &LoadBalancerService, ns_labels: &BTreeMap<String, String>) -> bool {
    let Some(a) = &pool.allocation else {
        return true;
    };
    let ns_ok = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
        || a.namespaces.contains(&svc.namespace)
        || a.namespace_selectors.iter().any(|s| selector_matches(s, ns_labels));
    let svc_ok = crate::api::any_selects(&a.service_selectors, &svc.labels);
    ns_ok && svc_ok
}

#[cfg(test)]
mod tests;

/// A Service that got no address, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassigned {
    pub service: String,
    pub error: AllocError,
}

/// The outcome of [`allocate_all`].
#[derive(Debug)]
pub struct Allocation {
    pub allocator: Allocator,
    pub assigned: Vec<crate::config::ServiceAddresses>,
    pub failed: Vec<Unassigned>,
    /// Services of another `loadBalancerClass`, left alone: `(service, class)`.
    pub ignored: Vec<(String, String)>,
    /// Per Service, why the addresses in its status were given up.
    pub cleared: HashMap<String, String>,
    /// Per Service, what is wrong with a request while its addresses are kept.
    pub warnings: HashMap<String, AllocError>,
}

/// Allocates for every Service of `config` that is ours: no `loadBalancerClass` when
/// `lb_class` is `None`, else exactly that class. First those that already hold addresses
/// (their status), so that no address in use moves, then the rest.
pub fn allocate_all(config: &crate::Config, lb_class: Option<&str>) -> Allocation {
    allocate_all_edited(config, lb_class, &HashSet::new())
}

/// [`allocate_all`], where the Services in `edited` changed how they share (key, ports,
/// selector, traffic policy) since the last round: of two holders that no longer may
/// share, the edited one moves, as when MetalLB converges the edited Service.
pub fn allocate_all_edited(config: &crate::Config, lb_class: Option<&str>, edited: &HashSet<String>) -> Allocation {
    let mut allocator = Allocator::new(&config.pools);
    let (mut assigned, mut failed, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cleared, mut warnings) = (HashMap::new(), HashMap::new());
    // Every namespace's labels as the API server would serve them, once.
    let served: BTreeMap<&str, BTreeMap<String, String>> = config
        .services
        .iter()
        .map(|s| s.namespace.as_str())
        .chain(config.namespaces.keys().map(String::as_str))
        .map(|ns| (ns, crate::served::namespace_labels(ns, config.namespaces.get(ns))))
        .collect();
    let ours = config.services.iter().filter(|s| {
        let mine = s.load_balancer_class.as_deref() == lb_class;
        if !mine {
            ignored.push((s.key(), s.load_balancer_class.clone().unwrap_or_default()));
        }
        mine
    });
    let (mut holding, mut asking): (Vec<_>, Vec<_>) = ours.partition(|s| !s.ingress_ips.is_empty());
    // Of two Services claiming one address, the unedited, else the older keeps it; those
    // waiting are served in creation order, so a burst gets predictable addresses.
    // Services of one second (the API's resolution) go by namespace/name; without
    // timestamps (a file), file order.
    let order =
        |s: &&LoadBalancerService| (edited.contains(&s.key()), s.created.clone(), s.created.is_some().then(|| s.key()));
    holding.sort_by_key(order);
    asking.sort_by_key(order);
    let mut record = |svc: &LoadBalancerService, out: Outcome| {
        if let Some(why) = out.cleared {
            cleared.insert(svc.key(), why);
        }
        if let Some(w) = out.warning {
            warnings.insert(svc.key(), w);
        }
        match out.result {
            Ok(a) => assigned.push(crate::config::ServiceAddresses {
                service: svc.key(),
                pool: a.pool,
                addresses: a.addresses,
            }),
            Err(error) => failed.push(Unassigned { service: svc.key(), error }),
        }
    };
    // Every address still validly held is taken first, so a Service whose own is no
    // longer valid never takes one another Service keeps.
    let mut deferred = Vec::new();
    for svc in holding {
        let labels = &served[svc.namespace.as_str()];
        match allocator.converge_or_defer(svc, labels, true) {
            Some(out) => record(svc, out),
            None => deferred.push(svc),
        }
    }
    for svc in deferred.into_iter().chain(asking) {
        let labels = &served[svc.namespace.as_str()];
        let out = allocator.converge(svc, labels);
        record(svc, out);
    }
    Allocation { allocator, assigned, failed, ignored, cleared, warnings }
}
