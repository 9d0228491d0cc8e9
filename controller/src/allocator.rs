//! The allocator: which addresses each LoadBalancer Service gets. Pure and deterministic:
//! the same pools and Services in the same order give the same result on every machine.
//!
//! Each pool keeps, per family, its free addresses as disjoint intervals in a `BTreeMap`,
//! so taking the first free address, reserving a requested one and releasing one are
//! O(log n) in the number of intervals, and a /64 costs memory only for what is taken.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ferrolb_proto::api::ServicePort;
use ferrolb_proto::api::{ANNOTATION_ADDRESS_POOL, ANNOTATION_ALLOW_SHARED_IP, LoadBalancerService, selector_matches};
use ferrolb_proto::config::{Pool, requested_ips};
use ferrolb_proto::range::{Family, IpRange, ip_to_u128, is_buggy_ip, u128_to_ip};

/// Why a Service got no address. Messages name the pool, address or rule involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{ip} is in no pool")]
    NotInAnyPool { ip: IpAddr },
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
    #[error("RequireDualStack, but pool {0:?} has only one family")]
    NotDualStack(String),
}

/// Free addresses of one family in one pool.
#[derive(Debug, Clone, Default)]
struct FreeSet {
    /// start -> end, inclusive, disjoint and not adjacent.
    intervals: BTreeMap<u128, u128>,
    total: u128,
    free: u128,
}

impl FreeSet {
    fn new(ranges: impl Iterator<Item = IpRange>) -> FreeSet {
        let mut f = FreeSet::default();
        for r in ranges {
            f.intervals.insert(r.start, r.end);
            f.total = f.total.saturating_add(r.size());
        }
        f.free = f.total;
        f
    }

    fn contains(&self, n: u128) -> bool {
        self.intervals.range(..=n).next_back().is_some_and(|(_, &end)| end >= n)
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
        self.free = self.free.saturating_sub(1);
        true
    }

    /// The lowest free address not rejected by `skip`, taken. Intervals holding only
    /// skipped addresses (at most two long: x.255, x+1.0) are dropped for good, so the
    /// cost stays logarithmic.
    fn take_first(&mut self, family: Family, avoid_buggy: bool) -> Option<u128> {
        loop {
            let (&start, &end) = self.intervals.iter().next()?;
            let usable = (start..=end.min(start.saturating_add(2)))
                .find(|n| !(avoid_buggy && is_buggy_ip(u128_to_ip(family, *n))));
            match usable {
                Some(n) => {
                    self.take(n);
                    return Some(n);
                }
                None => {
                    self.intervals.remove(&start);
                    self.free = self.free.saturating_sub(end - start + 1);
                }
            }
        }
    }

    fn release(&mut self, n: u128) {
        if self.contains(n) {
            return;
        }
        let (mut start, mut end) = (n, n);
        if let Some((&s, &e)) = self.intervals.range(..n).next_back()
            && e.checked_add(1) == Some(n)
        {
            self.intervals.remove(&s);
            start = s;
        }
        if let Some(next) = n.checked_add(1)
            && let Some(e) = self.intervals.remove(&next)
        {
            end = e;
        }
        self.intervals.insert(start, end);
        self.free = self.free.saturating_add(1);
    }
}

#[derive(Debug, Clone)]
struct PoolState {
    pool: Pool,
    v4: FreeSet,
    v6: FreeSet,
}

impl PoolState {
    fn free_set(&mut self, family: Family) -> &mut FreeSet {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    fn has_family(&self, family: Family) -> bool {
        self.pool.ranges.iter().any(|r| r.family == family)
    }
}

/// What address sharing needs to know of a Service (MetalLB's rules): only Services
/// with an `allow-shared-ip` key have one, so holders stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingProfile {
    key: String,
    ports: Vec<ServicePort>,
    selector: BTreeMap<String, String>,
    local: bool,
}

impl SharingProfile {
    pub fn of(svc: &LoadBalancerService) -> Option<SharingProfile> {
        let (key, _) = svc.annotation(ANNOTATION_ALLOW_SHARED_IP)?;
        (!key.is_empty()).then(|| SharingProfile {
            key: key.to_string(),
            ports: svc.ports.clone(),
            selector: svc.selector.clone(),
            local: svc.external_traffic_policy.as_deref() == Some("Local"),
        })
    }
}

/// Why a Service with profile `a` may not share an address with one with profile `b`, or
/// `None` if it may: the same key, no common port, and with `externalTrafficPolicy:
/// Local` on either, the same pods.
pub fn sharing_conflict(a: Option<&SharingProfile>, b: Option<&SharingProfile>) -> Option<String> {
    let (Some(a), Some(b)) = (a, b) else {
        return Some(format!("the two do not have the same {ANNOTATION_ALLOW_SHARED_IP} key"));
    };
    if a.key != b.key {
        return Some(format!("the two do not have the same {ANNOTATION_ALLOW_SHARED_IP} key"));
    }
    if let Some(p) = a.ports.iter().find(|p| b.ports.contains(p)) {
        return Some(format!("both use port {}/{}", p.port, p.protocol));
    }
    if (a.local || b.local) && a.selector != b.selector {
        return Some("externalTrafficPolicy is Local and they select different pods".into());
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
    /// In the order pools are tried: priority (lowest first, unset last), then name.
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

impl Allocator {
    pub fn new(pools: &[Pool]) -> Allocator {
        let mut pools: Vec<PoolState> = pools
            .iter()
            .map(|p| PoolState {
                pool: p.clone(),
                v4: FreeSet::new(p.ranges.iter().copied().filter(|r| r.family == Family::V4)),
                v6: FreeSet::new(p.ranges.iter().copied().filter(|r| r.family == Family::V6)),
            })
            .collect();
        pools.sort_by(|a, b| {
            let key = |p: &PoolState| (p.pool.allocation.priority.unwrap_or(i32::MAX), p.pool.name.clone());
            key(a).cmp(&key(b))
        });
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
            total_v4: p.v4.total,
            total_v6: p.v6.total,
            in_use_v4: p.v4.total - p.v4.free,
            in_use_v6: p.v6.total - p.v6.free,
        })
    }

    /// Gives `svc` its addresses: the ones it already holds (its status, after a
    /// restart), else the ones it asks for, else free ones from the first suitable pool.
    /// `namespace_labels` serves the pools' namespace selectors.
    pub fn assign(
        &mut self,
        svc: &LoadBalancerService,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Result<Assignment, AllocError> {
        let key = svc.key();
        self.release(&key);
        let (requested, _) =
            requested_ips(svc).map_err(|(field, message)| AllocError::BadRequest { field, message })?;
        let wanted_pool = svc.annotation(ANNOTATION_ADDRESS_POOL).map(|(p, _)| p.to_string());
        // Keep what the status says the Service holds. If that is no longer possible
        // (another Service claimed it first, or the pools changed), allocate afresh.
        let kept = (!svc.ingress_ips.is_empty())
            .then(|| self.reserve_all(svc, &svc.ingress_ips, wanted_pool.as_deref()).ok())
            .flatten();
        let result = match kept {
            Some(a) => Ok(a),
            None if requested.is_empty() => self.auto(svc, wanted_pool.as_deref(), namespace_labels),
            None => self.reserve_all(svc, &requested, wanted_pool.as_deref()),
        };
        if let Ok(a) = &result {
            self.by_service.insert(key, a.addresses.clone());
        }
        result
    }

    /// Takes every address in `ips` for `svc`, or none of them.
    fn reserve_all(
        &mut self,
        svc: &LoadBalancerService,
        ips: &[IpAddr],
        wanted_pool: Option<&str>,
    ) -> Result<Assignment, AllocError> {
        let mut pool_name = String::new();
        let profile = SharingProfile::of(svc);
        for &ip in ips {
            let idx = self.pool_of(ip).ok_or(AllocError::NotInAnyPool { ip })?;
            let p = &self.pools[idx].pool;
            if let Some(w) = wanted_pool.filter(|w| *w != p.name) {
                return Err(AllocError::WrongPool { ip, pool: p.name.clone(), wanted: w.to_string() });
            }
            if p.avoid_buggy_ips && is_buggy_ip(ip) {
                return Err(AllocError::BuggyIp { ip, pool: p.name.clone() });
            }
            if let Some((holder, reason)) = self
                .holders
                .get(&ip)
                .into_iter()
                .flatten()
                .find_map(|h| sharing_conflict(profile.as_ref(), h.sharing.as_ref()).map(|r| (h.key.clone(), r)))
            {
                return Err(AllocError::InUse { ip, holder, reason });
            }
            pool_name = p.name.clone();
        }
        for &ip in ips {
            self.hold(ip, svc.key(), profile.clone());
        }
        Ok(Assignment { addresses: ips.to_vec(), pool: pool_name })
    }

    fn hold(&mut self, ip: IpAddr, key: String, sharing: Option<SharingProfile>) {
        let holders = self.holders.entry(ip).or_default();
        if holders.is_empty()
            && let Some(idx) = self.pools.iter().position(|p| p.pool.contains(ip))
        {
            self.pools[idx].free_set(Family::of(ip)).take(ip_to_u128(ip));
        }
        holders.push(Holder { key, sharing });
    }

    fn auto(
        &mut self,
        svc: &LoadBalancerService,
        wanted_pool: Option<&str>,
        ns_labels: &BTreeMap<String, String>,
    ) -> Result<Assignment, AllocError> {
        let families = families(svc);
        let candidates: Vec<usize> = match wanted_pool {
            Some(w) => vec![
                self.pools
                    .iter()
                    .position(|p| p.pool.name == w)
                    .ok_or_else(|| AllocError::NoSuchPool(w.to_string()))?,
            ],
            None => (0..self.pools.len())
                .filter(|&i| self.pools[i].pool.auto_assign && serves(&self.pools[i].pool, svc, ns_labels))
                .collect(),
        };
        let require_dual = svc.ip_family_policy.as_deref() == Some("RequireDualStack");
        for idx in candidates {
            let p = &self.pools[idx];
            let usable: Vec<Family> = families.iter().copied().filter(|f| p.has_family(*f)).collect();
            if usable.is_empty() || (require_dual && usable.len() < families.len()) {
                if require_dual && wanted_pool.is_some() {
                    return Err(AllocError::NotDualStack(p.pool.name.clone()));
                }
                continue;
            }
            if let Some(addresses) = self.take_in_pool(idx, svc, &usable) {
                return Ok(Assignment { addresses, pool: self.pools[idx].pool.name.clone() });
            }
        }
        let names: Vec<&str> = families.iter().map(|f| if *f == Family::V4 { "IPv4" } else { "IPv6" }).collect();
        Err(AllocError::Exhausted { families: names.join("+") })
    }

    /// One address per family from pool `idx`: a shareable one already held under the
    /// same sharing key, else the first free one. All or nothing.
    fn take_in_pool(&mut self, idx: usize, svc: &LoadBalancerService, families: &[Family]) -> Option<Vec<IpAddr>> {
        let profile = SharingProfile::of(svc);
        let mut chosen = Vec::new();
        let mut fresh = Vec::new();
        for &family in families {
            // Sharing candidates are found by scanning holders: fine for the few Services
            // that share; an index by sharing key would make it logarithmic.
            let shared = if profile.is_some() {
                self.holders.iter().find_map(|(ip, hs)| {
                    (Family::of(*ip) == family
                        && self.pools[idx].pool.contains(*ip)
                        && hs.iter().all(|h| sharing_conflict(profile.as_ref(), h.sharing.as_ref()).is_none()))
                    .then_some(*ip)
                })
            } else {
                None
            };
            let avoid = self.pools[idx].pool.avoid_buggy_ips;
            match shared {
                Some(ip) => chosen.push(ip),
                None => match self.pools[idx].free_set(family).take_first(family, avoid) {
                    Some(n) => {
                        fresh.push((family, n));
                        chosen.push(u128_to_ip(family, n));
                    }
                    None => {
                        for (f, n) in fresh {
                            self.pools[idx].free_set(f).release(n);
                        }
                        return None;
                    }
                },
            }
        }
        // `hold` finds the fresh ones already taken from the free set and records them.
        for &ip in &chosen {
            self.hold(ip, svc.key(), profile.clone());
        }
        Some(chosen)
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
                    self.pools[idx].free_set(Family::of(ip)).release(ip_to_u128(ip));
                }
            }
        }
    }
}

/// The families a Service wants, in order (`ipFamilies`, `ipFamilyPolicy`).
pub fn families(svc: &LoadBalancerService) -> Vec<Family> {
    let mut fams: Vec<Family> = svc
        .ip_families
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    match svc.ip_family_policy.as_deref() {
        Some("PreferDualStack" | "RequireDualStack") => {
            for f in [Family::V4, Family::V6] {
                if !fams.contains(&f) {
                    fams.push(f);
                }
            }
        }
        _ => {
            fams.truncate(1);
            if fams.is_empty() {
                fams.push(Family::V4);
            }
        }
    }
    fams
}

/// Whether a pool's `serviceAllocation` admits the Service (no restriction admits all).
fn serves(pool: &Pool, svc: &LoadBalancerService, ns_labels: &BTreeMap<String, String>) -> bool {
    let a = &pool.allocation;
    let ns_ok = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
        || a.namespaces.contains(&svc.namespace)
        || a.namespace_selectors.iter().any(|s| selector_matches(s, ns_labels));
    let svc_ok = a.service_selectors.is_empty() || a.service_selectors.iter().any(|s| selector_matches(s, &svc.labels));
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
    pub assigned: Vec<ferrolb_proto::config::ServiceAddresses>,
    pub failed: Vec<Unassigned>,
    /// Services of another `loadBalancerClass`, left alone: `(service, class)`.
    pub ignored: Vec<(String, String)>,
}

/// Allocates for every Service of `config` that is ours: no `loadBalancerClass` when
/// `lb_class` is `None`, else exactly that class. First those that already hold addresses
/// (their status), so that no address in use moves, then the rest in file order.
pub fn allocate_all(config: &ferrolb_proto::Config, lb_class: Option<&str>) -> Allocation {
    let mut allocator = Allocator::new(&config.pools);
    let (mut assigned, mut failed, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
    let no_labels = BTreeMap::new();
    let ours = config.services.iter().filter(|s| {
        let mine = s.load_balancer_class.as_deref() == lb_class;
        if !mine {
            ignored.push((s.key(), s.load_balancer_class.clone().unwrap_or_default()));
        }
        mine
    });
    let (mut holding, mut asking): (Vec<_>, Vec<_>) = ours.partition(|s| !s.ingress_ips.is_empty());
    // Of two Services claiming one address, the older keeps it; those waiting are served in
    // creation order, so a burst gets predictable addresses. Services of one second (the
    // API's resolution) go by namespace/name; without timestamps (a file), file order.
    let order = |s: &&LoadBalancerService| (s.created.clone(), s.created.is_some().then(|| s.key()));
    holding.sort_by_key(order);
    asking.sort_by_key(order);
    for svc in holding.into_iter().chain(asking) {
        let labels = config.namespaces.get(&svc.namespace).unwrap_or(&no_labels);
        match allocator.assign(svc, labels) {
            Ok(a) => assigned.push(ferrolb_proto::config::ServiceAddresses {
                service: svc.key(),
                pool: a.pool,
                addresses: a.addresses,
            }),
            Err(error) => failed.push(Unassigned { service: svc.key(), error }),
        }
    }
    Allocation { allocator, assigned, failed, ignored }
}
