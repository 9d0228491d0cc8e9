//! BGP mode's configuration: MetalLB's BGPPeers, BGPAdvertisements, BFDProfiles and
//! Communities validated with MetalLB's rules (`peerFromCR`, `parseTimers`,
//! `bfdProfileFromCR`, `bgpAdvertisementFromCR`, `validateBGPAdvPerPool` in
//! internal/config/config.go at MetalLB 7938d3f89; `community.New` in
//! internal/bgp/community/community.go), each problem named by object and field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

mod routes;

pub use routes::{BgpPlan, Endpoints, Ready, Route, mask, peers_for_node, routes};

use super::{Issue, Pool};
use crate::api::{BFDProfile, BGPAdvertisement, BGPPeer, Community as CommunityObject};
use crate::range::Family;

/// A BGP community value: `AA:NN` (RFC 1997) or `large:A:B:C` (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommunityValue {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl fmt::Display for CommunityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommunityValue::Standard(a, b) => write!(f, "{a}:{b}"),
            CommunityValue::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

/// Why a community string is not a value: a bad number, or not the shape of one (then it
/// may be a Community object's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommunityError {
    Value(String),
    Format(String),
}

impl CommunityValue {
    /// As MetalLB's `community.New`: two 16-bit fields, or `large` and three 32-bit ones.
    pub fn parse(text: &str) -> Result<CommunityValue, CommunityError> {
        let fields: Vec<&str> = text.split(':').collect();
        let section = |s: &str, bits: u32| -> Result<u32, CommunityError> {
            s.parse::<u64>()
                .ok()
                .filter(|n| *n < (1u64 << bits))
                .map(|n| n as u32)
                .ok_or_else(|| CommunityError::Value(format!("invalid section {s:?} of community {text:?}")))
        };
        match fields.as_slice() {
            [a, b] => Ok(CommunityValue::Standard(section(a, 16)? as u16, section(b, 16)? as u16)),
            ["large", a, b, c] => Ok(CommunityValue::Large(section(a, 32)?, section(b, 32)?, section(c, 32)?)),
            [_, _, _, _] => Err(CommunityError::Value(format!(
                "invalid marker for large community, expected community to be of format large:<uint32>:<uint32>:<uint32> but got {text:?} instead"
            ))),
            _ => Err(CommunityError::Format(format!("invalid community format: {text}"))),
        }
    }
}

/// Go's `time.ParseDuration` syntax, as `metav1.Duration` is written: a sequence of
/// decimal numbers with units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (`90s`, `9m0s`, `1.5h`);
/// `0` alone is zero. Negative durations are refused: no BGP timer is negative.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// How the router's AS number is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAsn {
    Fixed(u32),
    /// Learned; `true`: must equal ours (iBGP), `false`: must differ (eBGP).
    Dynamic {
        internal: bool,
    },
}

/// Where a peer's TCP MD5 password comes from. `Debug` never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Clear(String),
    /// A `kubernetes.io/basic-auth` Secret in the speakers' namespace, key `password`.
    Secret(String),
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Clear(_) => f.write_str("Clear(..)"),
            Password::Secret(name) => f.debug_tuple("Secret").field(name).finish(),
        }
    }
}

/// A password goes into FRR's configuration as one word: whitespace would break the line
/// (and FRR's reload with it), a newline would add commands of its own.
fn password_fits(p: &str) -> bool {
    !p.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A validated BGPPeer.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub my_asn: u32,
    pub asn: PeerAsn,
    pub local_asn: Option<u32>,
    /// `None`: unnumbered, over `interface`.
    pub address: Option<IpAddr>,
    pub interface: Option<String>,
    pub source: Option<IpAddr>,
    pub port: u16,
    /// Hold and keepalive times, both or neither (the missing one derived as MetalLB does).
    pub timers: Option<(Duration, Duration)>,
    pub connect_time: Option<Duration>,
    pub router_id: Option<IpAddr>,
    pub node_selectors: Vec<LabelSelector>,
    pub password: Option<Password>,
    pub bfd_profile: Option<String>,
    pub graceful_restart: bool,
    pub ebgp_multihop: bool,
    pub vrf: Option<String>,
    pub disable_mp: bool,
    pub dual_stack_address_family: bool,
}

/// A validated BFDProfile, MetalLB's defaults filled in (FRR's: 300 ms, ×3, TTL 254).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdProfile {
    pub receive_interval: u32,
    pub transmit_interval: u32,
    pub detect_multiplier: u32,
    pub echo_interval: u32,
    pub echo_mode: bool,
    pub passive_mode: bool,
    pub minimum_ttl: u32,
}

/// A validated BGPAdvertisement.
#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisement {
    pub name: String,
    pub aggregation_length: u32,
    pub aggregation_length_v6: u32,
    pub local_pref: u32,
    pub communities: BTreeSet<CommunityValue>,
    pub ip_address_pools: Vec<String>,
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeers by name; every peer when empty.
    pub peers: Vec<String>,
    pub service_selectors: Vec<LabelSelector>,
}

/// BGP mode's part of a configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BgpConfig {
    pub peers: Vec<Peer>,
    pub advertisements: Vec<BgpAdvertisement>,
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    /// The passwords of the `passwordSecret`s peers name, by Secret name.
    pub passwords: Passwords,
}

/// Secret name -> password; `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passwords(pub BTreeMap<String, String>);

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl BgpConfig {
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.advertisements.is_empty() && self.bfd_profiles.is_empty()
    }
}

/// The BGP objects as read, each with the place it came from (for issues).
#[derive(Debug, Default)]
pub struct BgpObjects {
    pub peers: Vec<(String, BGPPeer)>,
    pub advertisements: Vec<(String, BGPAdvertisement)>,
    pub bfd_profiles: Vec<(String, BFDProfile)>,
    pub communities: Vec<(String, CommunityObject)>,
    /// `kubernetes.io/basic-auth` Secrets that hold a `password`: name -> password.
    pub password_secrets: BTreeMap<String, String>,
}

/// Validates the BGP objects against each other and the pools. Objects with errors are
/// left out of the result; returns it with the errors and the warnings.
pub fn validate(objects: BgpObjects, pools: &[Pool]) -> (BgpConfig, Vec<Issue>, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let mut error = |object: &str, field: &str, message: String| {
        issues.push(Issue { object: object.into(), field: field.into(), message })
    };
    let mut config = BgpConfig::default();
    let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.name.clone().unwrap_or_default();

    for (object, p) in &objects.bfd_profiles {
        match bfd_profile(p) {
            Ok(profile) => {
                if config.bfd_profiles.insert(name(&p.metadata), profile).is_some() {
                    error(object, "metadata.name", format!("found duplicate bfd profile name {}", name(&p.metadata)));
                }
            }
            Err((field, message)) => error(object, &field, message),
        }
    }

    let mut aliases: BTreeMap<String, CommunityValue> = BTreeMap::new();
    for (object, c) in &objects.communities {
        for (i, alias) in c.spec.communities.iter().enumerate() {
            match CommunityValue::parse(&alias.value) {
                Ok(v) => {
                    if aliases.insert(alias.name.clone(), v).is_some() {
                        error(
                            object,
                            &format!("spec.communities[{i}].name"),
                            format!("duplicate definition of community {:?}", alias.name),
                        );
                    }
                }
                Err(CommunityError::Value(m) | CommunityError::Format(m)) => {
                    error(object, &format!("spec.communities[{i}].value"), m)
                }
            }
        }
    }

    for (object, p) in &objects.peers {
        match peer(p, &objects.password_secrets, &config.bfd_profiles) {
            Ok(peer) => {
                if config.peers.iter().any(|q| q.name == peer.name) {
                    error(object, "metadata.name", format!("duplicate BGPPeer {:?}", peer.name));
                } else if let Some((f, m)) = config.peers.iter().find_map(|q| same_node_conflict(&peer, q)) {
                    error(object, f, m);
                } else {
                    config.peers.push(peer);
                }
            }
            Err((field, message)) => error(object, &field, message),
        }
    }

    for (object, a) in &objects.advertisements {
        match advertisement(a, &aliases) {
            Ok(adv) => {
                let mut ok = true;
                for (i, peer) in adv.peers.iter().enumerate() {
                    if !config.peers.iter().any(|p| &p.name == peer) {
                        // MetalLB accepts it and announces to no such peer (the BGPPeer may
                        // come later): a warning, so that a typo does not go unseen.
                        warnings.push(Issue {
                            object: object.clone(),
                            field: format!("spec.peers[{i}]"),
                            message: format!("no BGPPeer named {peer:?}: nothing is announced to it"),
                        });
                    }
                }
                for pool in pools.iter().filter(|p| advertises(&adv, p)) {
                    if let Err(m) = aggregation_fits(&adv, pool) {
                        error(object, "spec.aggregationLength", m);
                        ok = false;
                    }
                    // The second half of MetalLB's `validateBGPAdvPerPool` (config.go:996-1008):
                    // two advertisements may not give one update two LOCAL_PREFs.
                    if !adv.service_selectors.is_empty() {
                        continue;
                    }
                    let clash = config.advertisements.iter().find(|other| {
                        other.service_selectors.is_empty()
                            && advertises(other, pool)
                            && !compatible_local_pref(&adv, other, pool)
                            && adv.node_selectors == other.node_selectors
                    });
                    if let Some(other) = clash {
                        error(
                            object,
                            "spec.localPref",
                            format!(
                                "invalid local preference {}: local preference {} was already set by BGPAdvertisement {:?} for the same type of BGP update in pool {:?}",
                                adv.local_pref, other.local_pref, other.name, pool.name
                            ),
                        );
                        ok = false;
                    }
                }
                if ok {
                    config.advertisements.push(adv);
                }
            }
            Err((field, message)) => error(object, &field, message),
        }
    }
    // Only the passwords a peer uses are kept.
    let used: BTreeSet<&str> = config
        .peers
        .iter()
        .filter_map(|p| match &p.password {
            Some(Password::Secret(s)) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    config.passwords =
        Passwords(objects.password_secrets.into_iter().filter(|(name, _)| used.contains(name.as_str())).collect());
    (config, issues, warnings)
}

/// MetalLB's `BGPAdvertisementsHaveCompatibleLocalPref` (config.go:1014-1045), less its
/// node-set test, which needs the cluster's Nodes: at load time only advertisements with
/// the same node selectors are taken to overlap; [`routes`] checks per node, as MetalLB's
/// `checkBGPAdvConflicts` does per Service.
pub fn compatible_local_pref(a: &BgpAdvertisement, b: &BgpAdvertisement, pool: &Pool) -> bool {
    if a.local_pref == b.local_pref {
        return true;
    }
    // `isAggrLengthDifferent` (config.go:1047-1076): different prefixes are different updates.
    let has = |f: Family| pool.ranges.iter().any(|r| r.family == f);
    let (v4, v6) = (has(Family::V4), has(Family::V6));
    let differ4 = a.aggregation_length != b.aggregation_length;
    let differ6 = a.aggregation_length_v6 != b.aggregation_length_v6;
    if (!v4 || differ4) && (!v6 || differ6) {
        return true;
    }
    // Advertisements to disjoint sets of peers do not collide.
    !a.peers.is_empty() && !b.peers.is_empty() && !a.peers.iter().any(|p| b.peers.contains(p))
}

/// Whether `adv` covers `pool`: named, or selected by label, or every pool when neither.
pub fn advertises(adv: &BgpAdvertisement, pool: &Pool) -> bool {
    if adv.ip_address_pools.is_empty() && adv.ip_address_pool_selectors.is_empty() {
        return true;
    }
    adv.ip_address_pools.contains(&pool.name)
        || adv.ip_address_pool_selectors.iter().any(|s| crate::api::selector_matches(s, &pool.labels))
}

/// MetalLB's `peersCanRunOnSameNode` for FRR mode (internal/config/validation.go:183-196),
/// for peers whose node selectors are the same (without the cluster's Nodes, the ones
/// known to share nodes): one router ID, one local ASN per VRF, no session twice.
fn same_node_conflict(p: &Peer, q: &Peer) -> Option<(&'static str, String)> {
    if p.node_selectors != q.node_selectors {
        return None;
    }
    if p.router_id.is_some() && q.router_id.is_some() && p.router_id != q.router_id {
        return Some((
            "spec.routerID",
            format!("router ID differs from BGPPeer {:?}'s: peers on the same node must share one", q.name),
        ));
    }
    if p.vrf == q.vrf && p.my_asn != q.my_asn {
        return Some((
            "spec.myASN",
            format!("myASN differs from BGPPeer {:?}'s in the same VRF: FRR runs one BGP router per VRF", q.name),
        ));
    }
    if p.vrf == q.vrf
        && (p.address.is_some() && p.address == q.address || p.interface.is_some() && p.interface == q.interface)
    {
        return Some(("spec.peerAddress", format!("BGPPeer {:?} already opens this session", q.name)));
    }
    None
}

type FieldError = (String, String);

fn field(f: &str, message: impl Into<String>) -> FieldError {
    (f.to_string(), message.into())
}

fn peer(
    p: &BGPPeer,
    secrets: &BTreeMap<String, String>,
    bfd: &BTreeMap<String, BfdProfile>,
) -> Result<Peer, FieldError> {
    let s = &p.spec;
    if s.my_asn == 0 {
        return Err(field("spec.myASN", "missing local ASN"));
    }
    let asn = match (s.peer_asn, s.dynamic_asn.as_str()) {
        (0, "") => return Err(field("spec.peerASN", "missing peer ASN and dynamicASN")),
        (_, "") => PeerAsn::Fixed(s.peer_asn),
        (0, "internal") => PeerAsn::Dynamic { internal: true },
        (0, "external") => PeerAsn::Dynamic { internal: false },
        (0, other) => return Err(field("spec.dynamicASN", format!("invalid dynamicASN {other}"))),
        _ => return Err(field("spec.dynamicASN", "both peer ASN and dynamicASN specified")),
    };
    if s.peer_asn == s.my_asn && s.ebgp_multi_hop {
        return Err(field("spec.ebgpMultiHop", "invalid ebgp-multihop parameter set for an ibgp peer"));
    }
    let address = match (s.peer_address.as_str(), s.interface.as_str()) {
        ("", "") => return Err(field("spec.peerAddress", "peer has no Address or Interface specified")),
        (a, "") => {
            Some(a.parse::<IpAddr>().map_err(|_| field("spec.peerAddress", format!("invalid BGPPeer address {a:?}")))?)
        }
        ("", _) => None,
        _ => return Err(field("spec.interface", "peer has both Address and Interface specified")),
    };
    let duration = |f: &str, v: &Option<String>| -> Result<Option<Duration>, FieldError> {
        v.as_deref().map(|t| parse_go_duration(t).map_err(|m| field(f, m))).transpose()
    };
    let hold = duration("spec.holdTime", &s.hold_time)?;
    let keepalive = duration("spec.keepaliveTime", &s.keepalive_time)?;
    let timers =
        parse_timers(hold, keepalive).map_err(|m| field("spec.holdTime", format!("invalid BGPPeer timers: {m}")))?;
    // BGP carries the hold time in 16 bits (RFC 4271 4.2), and FRR's `timers` takes 0-65535.
    if timers.is_some_and(|(h, _)| h.as_secs() > 65535) {
        return Err(field("spec.holdTime", "invalid BGPPeer timers: hold time above 65535 s"));
    }
    let connect_time = duration("spec.connectTime", &s.connect_time)?;
    if let Some(c) = connect_time
        && (c.as_secs() < 1 || c.as_secs() > 65535 || c.subsec_nanos() != 0)
    {
        return Err(field("spec.connectTime", "connect time should be a whole number of seconds between 1 and 65535"));
    }
    let ip = |f: &str, v: &str, what: &str| -> Result<Option<IpAddr>, FieldError> {
        (!v.is_empty()).then(|| v.parse::<IpAddr>().map_err(|_| field(f, format!("invalid {what} {v:?}")))).transpose()
    };
    let router_id = ip("spec.routerID", &s.router_id, "router ID")?;
    // FRR's `bgp router-id` takes an IPv4 address only.
    if router_id.is_some_and(|r| r.is_ipv6()) {
        return Err(field(
            "spec.routerID",
            format!("invalid router ID {:?}: a router ID is an IPv4 address", s.router_id),
        ));
    }
    let source = ip("spec.sourceAddress", &s.source_address, "source IP")?;
    let secret = s.password_secret.as_ref().map(|r| r.name.as_str()).filter(|n| !n.is_empty());
    let password = match (s.password.as_str(), secret) {
        ("", None) => None,
        (pw, None) if !password_fits(pw) => {
            return Err(field(
                "spec.password",
                "a password with whitespace or control characters cannot be given to FRR",
            ));
        }
        (pw, None) => Some(Password::Clear(pw.into())),
        ("", Some(name)) => match secrets.get(name) {
            None => {
                return Err(field(
                    "spec.passwordSecret.name",
                    format!("secret ref not found: no kubernetes.io/basic-auth Secret {name:?} with a password"),
                ));
            }
            Some(pw) if !password_fits(pw) => {
                return Err(field(
                    "spec.passwordSecret.name",
                    format!(
                        "Secret {name:?}'s password has whitespace or control characters: it cannot be given to FRR"
                    ),
                ));
            }
            Some(_) => Some(Password::Secret(name.into())),
        },
        _ => return Err(field("spec.password", "can not have both password and secret ref set in peer config")),
    };
    let bfd_profile = (!s.bfd_profile.is_empty()).then(|| s.bfd_profile.clone());
    if let Some(name) = &bfd_profile
        && !bfd.contains_key(name)
    {
        return Err(field("spec.bfdProfile", format!("peer referencing non existing bfd profile {name}")));
    }
    Ok(Peer {
        name: p.metadata.name.clone().unwrap_or_default(),
        my_asn: s.my_asn,
        asn,
        local_asn: (s.local_asn != 0).then_some(s.local_asn),
        address,
        interface: (!s.interface.is_empty()).then(|| s.interface.clone()),
        source,
        port: if s.peer_port == 0 { 179 } else { s.peer_port },
        timers,
        connect_time,
        router_id,
        node_selectors: s.node_selectors.clone(),
        password,
        bfd_profile,
        graceful_restart: s.enable_graceful_restart,
        ebgp_multihop: s.ebgp_multi_hop,
        vrf: (!s.vrf.is_empty()).then(|| s.vrf.clone()),
        disable_mp: s.disable_mp,
        dual_stack_address_family: s.dual_stack_address_family,
    })
}

/// MetalLB's `parseTimers`: one given, the other derived (keepalive = hold / 3); hold
/// time 0 or at least 3 s (whole seconds counted); keepalive not above hold.
pub fn parse_timers(
    hold: Option<Duration>,
    keepalive: Option<Duration>,
) -> Result<Option<(Duration, Duration)>, String> {
    let (hold, keepalive) = match (hold, keepalive) {
        (None, None) => return Ok(None),
        (Some(h), Some(k)) => (h, k),
        (Some(h), None) => (h, h / 3),
        (None, Some(k)) => (k * 3, k),
    };
    let whole = hold.as_secs();
    if whole != 0 && whole < 3 {
        return Err(format!("invalid hold time {hold:?}: must be 0 or >=3s"));
    }
    if keepalive > hold {
        return Err(format!("invalid keepaliveTime {keepalive:?}, must be lower than holdTime {hold:?}"));
    }
    Ok(Some((hold, keepalive)))
}

fn bfd_profile(p: &BFDProfile) -> Result<BfdProfile, FieldError> {
    let s = &p.spec;
    let within = |f: &str, v: Option<u32>, min: u32, max: u32, default: u32, what: &str| -> Result<u32, FieldError> {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            return Err(field(f, format!("invalid {what} value {v}: must be between {min} and {max}")));
        }
        Ok(v)
    };
    Ok(BfdProfile {
        detect_multiplier: within("spec.detectMultiplier", s.detect_multiplier, 2, 255, 3, "detect multiplier")?,
        receive_interval: within("spec.receiveInterval", s.receive_interval, 10, 60000, 300, "receive interval")?,
        transmit_interval: within("spec.transmitInterval", s.transmit_interval, 10, 60000, 300, "transmit interval")?,
        minimum_ttl: within("spec.minimumTtl", s.minimum_ttl, 1, 254, 254, "minimum ttl")?,
        echo_interval: within("spec.echoInterval", s.echo_interval, 10, 60000, 50, "echo interval")?,
        echo_mode: s.echo_mode.unwrap_or(false),
        passive_mode: s.passive_mode.unwrap_or(false),
    })
}

fn advertisement(
    a: &BGPAdvertisement,
    aliases: &BTreeMap<String, CommunityValue>,
) -> Result<BgpAdvertisement, FieldError> {
    let s = &a.spec;
    let name = a.metadata.name.clone().unwrap_or_default();
    duplicates(&s.ip_address_pools, "spec.ipAddressPools")?;
    duplicates(&s.communities, "spec.communities")?;
    duplicates(&s.peers, "spec.peers")?;
    if !s.service_selectors.is_empty() {
        if s.aggregation_length.is_some_and(|l| l != 32) {
            return Err(field(
                "spec.aggregationLength",
                format!("serviceSelectors and aggregationLength are mutually exclusive, both cannot be set in {name}"),
            ));
        }
        if s.aggregation_length_v6.is_some_and(|l| l != 128) {
            return Err(field(
                "spec.aggregationLengthV6",
                format!(
                    "serviceSelectors and aggregationLengthV6 are mutually exclusive, both cannot be set in {name}"
                ),
            ));
        }
    }
    let length = |f: &str, v: Option<i32>, min: i32, max: u32, family: &str| -> Result<u32, FieldError> {
        match v {
            None => Ok(max),
            Some(l) if (min..=max as i32).contains(&l) => Ok(l as u32),
            Some(l) => Err(field(f, format!("invalid aggregation length {l} for {family}"))),
        }
    };
    let aggregation_length = length("spec.aggregationLength", s.aggregation_length, 1, 32, "IPv4")?;
    // No lower bound for IPv6 in MetalLB's CRD or config.go:886-889.
    let aggregation_length_v6 = length("spec.aggregationLengthV6", s.aggregation_length_v6, 0, 128, "IPv6")?;
    let mut communities = BTreeSet::new();
    for (i, c) in s.communities.iter().enumerate() {
        let v = match aliases.get(c) {
            Some(v) => *v,
            None => CommunityValue::parse(c).map_err(|e| {
                let why = match e {
                    CommunityError::Value(m) => m,
                    CommunityError::Format(_) => format!("not a community value, and no Community object names {c:?}"),
                };
                field(&format!("spec.communities[{i}]"), format!("invalid community {c:?} in BGP advertisement: {why}"))
            })?,
        };
        communities.insert(v);
    }
    Ok(BgpAdvertisement {
        name,
        aggregation_length,
        aggregation_length_v6,
        local_pref: s.local_pref,
        communities,
        ip_address_pools: s.ip_address_pools.clone(),
        ip_address_pool_selectors: s.ip_address_pool_selectors.clone(),
        node_selectors: s.node_selectors.clone(),
        peers: s.peers.clone(),
        service_selectors: s.service_selectors.clone(),
    })
}

fn duplicates(values: &[String], f: &str) -> Result<(), FieldError> {
    let mut seen = BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        if !seen.insert(v) {
            return Err(field(&format!("{f}[{i}]"), format!("duplicate definition of {v:?}")));
        }
    }
    Ok(())
}

/// MetalLB's `validateBGPAdvPerPool`: an aggregation length shorter than a pool's widest
/// CIDR would announce addresses outside the pool.
fn aggregation_fits(adv: &BgpAdvertisement, pool: &Pool) -> Result<(), String> {
    for range in &pool.ranges {
        let length = match range.family {
            Family::V4 => adv.aggregation_length,
            Family::V6 => adv.aggregation_length_v6,
        };
        let widest = range.widest_prefix();
        if length < widest {
            return Err(format!(
                "invalid aggregation length {length}: prefix {widest} in pool {:?} is more specific than the aggregation length for addresses {range}",
                pool.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
