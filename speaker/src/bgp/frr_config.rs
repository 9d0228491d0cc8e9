//! FRR's configuration for one node, as MetalLB renders it (internal/bgp/frr/templates/
//! at MetalLB 7938d3f89): one `router bgp` per (ASN, VRF); per neighbor an inbound
//! route-map that accepts nothing and an outbound one that lets out only the prefixes
//! meant for that neighbor, with their LOCAL_PREF and communities; the prefixes as
//! `network` statements; BFD profiles. Pure: text out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ferrolb_model::config::bgp::{BfdProfile, CommunityValue, Password, Peer, PeerAsn, Route};

/// What one node's FRR is told.
#[derive(Debug, Clone, Copy)]
pub struct FrrInput<'a> {
    pub hostname: &'a str,
    /// The node's address, when the peers name no router ID.
    pub router_id: Option<IpAddr>,
    /// The sessions this node opens.
    pub peers: &'a [&'a Peer],
    /// What this node announces.
    pub routes: &'a [Route],
    pub bfd_profiles: &'a BTreeMap<String, BfdProfile>,
    /// Passwords of `passwordSecret`s, by Secret name.
    pub secrets: &'a BTreeMap<String, String>,
}

/// Which families a session carries: its address's, or both for an unnumbered session or
/// `dualStackAddressFamily` (MetalLB's internal/bgp/frr/frr.go:259).
fn families(peer: &Peer) -> (bool, bool) {
    match peer.address {
        _ if peer.interface.is_some() || peer.dual_stack_address_family => (true, true),
        Some(IpAddr::V6(_)) => (false, true),
        _ => (true, false),
    }
}

/// How FRR names the neighbor: its address, or its interface when unnumbered.
fn neighbor(peer: &Peer) -> String {
    match (&peer.address, &peer.interface) {
        (Some(a), _) => a.to_string(),
        (None, Some(i)) => i.clone(),
        (None, None) => String::new(),
    }
}

/// Route-map and prefix-list names of a neighbor (its name, plus its VRF).
fn id(peer: &Peer) -> String {
    match &peer.vrf {
        Some(v) => format!("{}-{v}", neighbor(peer)),
        None => neighbor(peer),
    }
}

fn remote_as(peer: &Peer) -> String {
    match peer.asn {
        PeerAsn::Fixed(n) => n.to_string(),
        PeerAsn::Dynamic { internal: true } => "internal".into(),
        PeerAsn::Dynamic { internal: false } => "external".into(),
    }
}

/// Whether `r` goes to `peer`: it names no peer, or this one.
fn meant_for(r: &Route, peer: &Peer) -> bool {
    r.peers.is_empty() || r.peers.contains(&peer.name)
}

fn prefix(r: &Route) -> String {
    format!("{}/{}", r.prefix, r.length)
}

/// MetalLB's `mustDisableConnectedCheck`: single-hop eBGP over IPv6 (link-local next hops).
fn disable_connected_check(peer: &Peer) -> bool {
    let v6 = matches!(peer.address, Some(IpAddr::V6(_))) && !peer.dual_stack_address_family;
    if !v6 || peer.ebgp_multihop {
        return false;
    }
    match peer.asn {
        PeerAsn::Dynamic { internal } => !internal,
        PeerAsn::Fixed(n) => n != peer.my_asn,
    }
}

/// Renders the configuration. Deterministic: the same input gives the same text, so an
/// unchanged plan never makes FRR reload anything. A peer whose password Secret is not in
/// `secrets` is left out: the router would refuse the session without it.
pub fn render(input: &FrrInput<'_>) -> String {
    let peers: Vec<&Peer> = input
        .peers
        .iter()
        .copied()
        .filter(|p| !matches!(&p.password, Some(Password::Secret(s)) if !input.secrets.contains_key(s)))
        .collect();
    let input = &FrrInput { peers: &peers, ..*input };
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "log stdout informational");
    let _ = writeln!(w, "log timestamp precision 3");
    let _ = writeln!(w, "hostname {}", input.hostname);
    let _ = writeln!(w, "ip nht resolve-via-default");
    let _ = writeln!(w, "ipv6 nht resolve-via-default");
    let _ = writeln!(w, "!");
    let mut routers: BTreeMap<(u32, Option<&str>), Vec<&Peer>> = BTreeMap::new();
    for peer in input.peers {
        routers.entry((peer.my_asn, peer.vrf.as_deref())).or_default().push(peer);
    }
    // The prefixes each router originates: those meant for any of its peers.
    let originated = |peers: &[&Peer]| -> BTreeSet<&Route> {
        input.routes.iter().filter(|r| peers.iter().any(|p| meant_for(r, p))).collect()
    };
    for peers in routers.values() {
        let all = originated(peers);
        for peer in peers {
            filters(w, peer, input.routes, &all);
        }
    }
    for ((asn, vrf), peers) in &routers {
        let _ = match vrf {
            Some(v) => writeln!(w, "router bgp {asn} vrf {v}"),
            None => writeln!(w, "router bgp {asn}"),
        };
        for line in [
            "no bgp ebgp-requires-policy",
            "no bgp network import-check",
            "no bgp default ipv4-unicast",
            "bgp graceful-restart preserve-fw-state",
        ] {
            let _ = writeln!(w, "  {line}");
        }
        // FRR's router ID is an IPv4 address: an IPv6-only node leaves FRR to choose.
        if let Some(id) = peers.iter().find_map(|p| p.router_id).or(input.router_id).filter(IpAddr::is_ipv4) {
            let _ = writeln!(w, "  bgp router-id {id}");
        }
        for peer in peers {
            session(w, peer, input);
        }
        for peer in peers {
            let (v4, v6) = families(peer);
            let name = neighbor(peer);
            for (on, family) in [(v4, "ipv4"), (v6, "ipv6")] {
                if on {
                    let _ = writeln!(w, "  address-family {family} unicast");
                    let _ = writeln!(w, "    neighbor {name} activate");
                    let _ = writeln!(w, "    neighbor {name} route-map {}-in in", id(peer));
                    let _ = writeln!(w, "    neighbor {name} route-map {}-out out", id(peer));
                    let _ = writeln!(w, "  exit-address-family");
                }
            }
        }
        let mine = originated(peers);
        for (v4, family) in [(true, "ipv4"), (false, "ipv6")] {
            let prefixes: BTreeSet<String> =
                mine.iter().filter(|r| r.prefix.is_ipv4() == v4).map(|r| prefix(r)).collect();
            if !prefixes.is_empty() {
                let _ = writeln!(w, "  address-family {family} unicast");
                for p in prefixes {
                    let _ = writeln!(w, "    network {p}");
                }
                let _ = writeln!(w, "  exit-address-family");
            }
        }
        let _ = writeln!(w, "exit");
        let _ = writeln!(w, "!");
    }
    let used: BTreeSet<&str> = input.peers.iter().filter_map(|p| p.bfd_profile.as_deref()).collect();
    if !used.is_empty() {
        let _ = writeln!(w, "bfd");
        for name in used {
            let Some(p) = input.bfd_profiles.get(name) else { continue };
            let _ = writeln!(w, "  profile {name}");
            let _ = writeln!(w, "    receive-interval {}", p.receive_interval);
            let _ = writeln!(w, "    transmit-interval {}", p.transmit_interval);
            let _ = writeln!(w, "    detect-multiplier {}", p.detect_multiplier);
            if p.echo_mode {
                let _ = writeln!(w, "    echo-mode");
                let _ = writeln!(w, "    echo receive-interval {}", p.echo_interval);
                let _ = writeln!(w, "    echo transmit-interval {}", p.echo_interval);
            }
            if p.passive_mode {
                let _ = writeln!(w, "    passive-mode");
            }
            let _ = writeln!(w, "    minimum-ttl {}", p.minimum_ttl);
            let _ = writeln!(w, "  exit");
        }
        let _ = writeln!(w, "exit");
        let _ = writeln!(w, "!");
    }
    out
}

/// The `network` lines `old` has and `new` has not, as `no network` commands in their
/// `router bgp` and `address-family` context: one file for `vtysh -f`. frr-reload.py runs
/// every deletion as a vtysh of its own (1,000 withdrawn Services: 30 s), a file of them
/// takes under 0.1 s; what it leaves, frr-reload.py then finds already gone. Withdrawing
/// first is safe: those prefixes go anyway.
pub fn withdrawn_networks(old: &str, new: &str) -> String {
    fn networks(text: &str) -> BTreeSet<(&str, &str, &str)> {
        let (mut router, mut family) = ("", "");
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let t = line.trim();
            if line.starts_with("router bgp ") {
                (router, family) = (line, "");
            } else if line == "exit" {
                (router, family) = ("", "");
            } else if t.starts_with("address-family ") {
                family = t;
            } else if t == "exit-address-family" {
                family = "";
            } else if t.starts_with("network ") && !router.is_empty() && !family.is_empty() {
                out.insert((router, family, t));
            }
        }
        out
    }
    let new = networks(new);
    let mut out = String::new();
    let mut context = None;
    for (router, family, network) in networks(old).into_iter().filter(|n| !new.contains(n)) {
        if context != Some((router, family)) {
            if context.is_some() {
                out += " exit-address-family\nexit\n";
            }
            let _ = writeln!(out, "{router}\n {family}");
            context = Some((router, family));
        }
        let _ = writeln!(out, "  no {network}");
    }
    if context.is_some() {
        out += " exit-address-family\nexit\n";
    }
    out
}

/// The neighbor's route-maps: nothing in; out, its prefixes with their attributes set
/// (one prefix list per LOCAL_PREF and per community), then its prefixes, per family.
///
/// A neighbor given everything its router originates (in the families it carries) needs
/// no prefix lists: its route-map entries match everything. Nothing else is in the BGP
/// table (nothing is accepted in), so that lets out the same routes; and FRR takes each
/// prefix-list entry slowly (1,000 of them: 16 s in frr-reload.py, against 0.9 s for the
/// 1,000 `network` lines), which MetalLB's per-prefix lists always cost.
fn filters(w: &mut String, peer: &Peer, routes: &[Route], originated: &BTreeSet<&Route>) {
    let id = id(peer);
    let (v4, v6) = families(peer);
    let carried = |r: &Route| if r.prefix.is_ipv4() { v4 } else { v6 };
    let mine: Vec<&Route> = routes.iter().filter(|r| meant_for(r, peer) && carried(r)).collect();
    let everything: BTreeSet<String> = originated.iter().filter(|r| carried(r)).map(|r| prefix(r)).collect();
    let complete = !mine.is_empty() && mine.iter().map(|r| prefix(r)).collect::<BTreeSet<_>>() == everything;
    let _ = writeln!(w, "route-map {id}-in deny 20");
    let _ = writeln!(w, "!");
    let mut seq = 0;
    let mut entry = |w: &mut String, list: Option<&str>, ip: &str, set: &str| {
        seq += 1;
        let _ = writeln!(w, "route-map {id}-out permit {seq}");
        if let Some(list) = list {
            let _ = writeln!(w, "  match {ip} address prefix-list {list}");
        }
        if !set.is_empty() {
            let _ = writeln!(w, "  {set}");
            let _ = writeln!(w, "  on-match next");
        }
        let _ = writeln!(w, "!");
    };
    // Attribute lists: (family keyword, list name) -> prefixes, and the `set` line.
    let mut lists: BTreeMap<(bool, String), (BTreeSet<String>, String)> = BTreeMap::new();
    for r in &mine {
        let fam = if r.prefix.is_ipv4() { "ipv4" } else { "ipv6" };
        if r.local_pref != 0 {
            let name = format!("{id}-{}-{fam}-localpref-prefixes", r.local_pref);
            let e = lists
                .entry((r.prefix.is_ipv4(), name))
                .or_insert_with(|| (BTreeSet::new(), format!("set local-preference {}", r.local_pref)));
            e.0.insert(prefix(r));
        }
        for c in &r.communities {
            let (kind, value) = match c {
                CommunityValue::Standard(..) => ("community", c.to_string()),
                CommunityValue::Large(a, b, d) => ("large-community", format!("{a}:{b}:{d}")),
            };
            let name = format!("{id}-{}-{fam}-community-prefixes", value.replace(':', "-"));
            let e = lists
                .entry((r.prefix.is_ipv4(), name))
                .or_insert_with(|| (BTreeSet::new(), format!("set {kind} {value} additive")));
            e.0.insert(prefix(r));
        }
    }
    if complete {
        // One attribute entry per `set` line, unmatched when it is for every prefix.
        let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (prefixes, set) in lists.values() {
            sets.entry(set.clone()).or_default().extend(prefixes.iter().cloned());
        }
        for (set, prefixes) in &sets {
            if prefixes.len() == everything.len() {
                entry(w, None, "", set);
            }
        }
        lists.retain(|_, (_, set)| sets[set.as_str()].len() != everything.len());
    }
    for ((is_v4, name), (prefixes, set)) in &lists {
        let ip = if *is_v4 { "ip" } else { "ipv6" };
        for (i, p) in prefixes.iter().enumerate() {
            let _ = writeln!(w, "{ip} prefix-list {name} seq {} permit {p}", i + 1);
        }
        entry(w, Some(name), ip, set);
    }
    if complete {
        entry(w, None, "", "");
        return;
    }
    for (is_v4, ip, fam) in [(true, "ip", "ipv4"), (false, "ipv6", "ipv6")] {
        let list = format!("{id}-pl-{fam}");
        let prefixes: BTreeSet<String> =
            mine.iter().filter(|r| r.prefix.is_ipv4() == is_v4).map(|r| prefix(r)).collect();
        if prefixes.is_empty() {
            let _ = writeln!(w, "{ip} prefix-list {list} seq 1 deny any");
        }
        for (i, p) in prefixes.iter().enumerate() {
            let _ = writeln!(w, "{ip} prefix-list {list} seq {} permit {p}", i + 1);
        }
        entry(w, Some(&list), ip, "");
    }
}

fn session(w: &mut String, peer: &Peer, input: &FrrInput<'_>) {
    let name = neighbor(peer);
    let _ = match &peer.interface {
        Some(i) => writeln!(w, "  neighbor {i} interface remote-as {}", remote_as(peer)),
        None => writeln!(w, "  neighbor {name} remote-as {}", remote_as(peer)),
    };
    if peer.ebgp_multihop {
        let _ = writeln!(w, "  neighbor {name} ebgp-multihop");
    }
    if let Some(local) = peer.local_asn {
        let _ = writeln!(w, "  neighbor {name} local-as {local} no-prepend replace-as");
    }
    if peer.port != 179 {
        let _ = writeln!(w, "  neighbor {name} port {}", peer.port);
    }
    if let Some((hold, keepalive)) = peer.timers {
        let _ = writeln!(w, "  neighbor {name} timers {} {}", keepalive.as_secs(), hold.as_secs());
    }
    if let Some(c) = peer.connect_time {
        let _ = writeln!(w, "  neighbor {name} timers connect {}", c.as_secs());
    }
    let password = match &peer.password {
        Some(Password::Clear(p)) => Some(p.as_str()),
        Some(Password::Secret(s)) => input.secrets.get(s).map(String::as_str),
        None => None,
    };
    if let Some(p) = password {
        let _ = writeln!(w, "  neighbor {name} password {p}");
    }
    if let Some(src) = peer.source {
        let _ = writeln!(w, "  neighbor {name} update-source {src}");
    }
    // Without `enableGracefulRestart` no graceful-restart capability at all: MetalLB's
    // rendering leaves FRR's default helper mode, whose capability (with the global
    // `preserve-fw-state`) makes a router such as BIRD keep a dead node's routes as stale
    // for the restart time (120 s) instead of dropping them at the hold time.
    if peer.graceful_restart {
        let _ = writeln!(w, "  neighbor {name} graceful-restart");
    } else {
        let _ = writeln!(w, "  neighbor {name} graceful-restart-disable");
    }
    if let Some(profile) = &peer.bfd_profile {
        let _ = writeln!(w, "  neighbor {name} bfd");
        let _ = writeln!(w, "  neighbor {name} bfd profile {profile}");
    }
    if disable_connected_check(peer) {
        let _ = writeln!(w, "  neighbor {name} disable-connected-check");
    }
}

#[cfg(test)]
mod tests;
