//! Which live member answers for each address: rendezvous hashing of (node, address),
//! so every member computes the same owner from the same view, and a membership change
//! moves mostly the addresses of the member that changed. A load bound keeps the spread
//! even for small address counts, where plain rendezvous is lumpy (30 addresses on 3
//! nodes would often give one node 14).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{Announcement, NodeInfo, Plan};

/// A live member as a node sees it (the speakers' membership produces these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Past its hold-down (or a founder): may be given addresses.
    pub settled: bool,
}

/// The owner of every candidate address of `plan` among the live `members` (by name),
/// and what `me` announces. Settled members are preferred; members still in hold-down
/// get an address only when no settled member may announce it.
pub fn decide(plan: &Plan, members: &[Member], me: &str) -> (Vec<Option<String>>, Vec<Announcement>) {
    let nodes: Vec<NodeInfo> =
        members.iter().map(|m| NodeInfo { name: m.name.clone(), labels: m.labels.clone() }).collect();
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let ips: Vec<IpAddr> = plan.candidates.iter().map(|c| c.ip).collect();
    let may: Vec<Vec<bool>> =
        plan.candidates.iter().map(|c| nodes.iter().map(|n| plan.eligible(c, n)).collect()).collect();
    let any_settled: Vec<bool> =
        may.iter().map(|row| row.iter().zip(members).any(|(ok, m)| *ok && m.settled)).collect();
    let mut allowed: Vec<Vec<bool>> = may
        .iter()
        .enumerate()
        .map(|(i, row)| row.iter().zip(members).map(|(ok, m)| *ok && (m.settled || !any_settled[i])).collect())
        .collect();
    // preferredNodeSelectors: of the nodes allowed, only the most preferred (MetalLB's
    // `sortL2Candidates` puts the highest score first, speaker/layer2_controller.go:189).
    for (c, row) in plan.candidates.iter().zip(&mut allowed) {
        let prefs: Vec<i64> = nodes.iter().map(|n| plan.preference(c, n)).collect();
        if let Some(best) = row.iter().zip(&prefs).filter(|(ok, _)| **ok).map(|(_, p)| *p).max() {
            row.iter_mut().zip(&prefs).for_each(|(ok, p)| *ok &= *p == best);
        }
    }
    let allowed = |i: usize, n: usize| allowed[i][n];
    let owners = assign_by_service(plan, &ips, &names, allowed);
    let me_index = names.iter().position(|n| *n == me);
    let mine = plan
        .candidates
        .iter()
        .zip(&owners)
        .filter(|(_, o)| o.is_some() && **o == me_index)
        .filter_map(|(c, _)| me_index.and_then(|i| plan.announcement(c, &nodes[i])))
        .collect();
    (owners.into_iter().map(|o| o.map(|n| names[n].to_string())).collect(), mine)
}

/// [`assign`], with every address of a Service on one node, as MetalLB elects one node
/// per Service from its first address (`ShouldAnnounce`, speaker/layer2_controller.go:123
/// at MetalLB 7938d3f): a dual-stack Service answers ARP and NDP from the same node. The
/// Service's first address (IPv4 first, as the status lists them) is placed; its other
/// addresses follow it where that node may announce them, and are placed on their own
/// otherwise.
fn assign_by_service(
    plan: &Plan,
    ips: &[IpAddr],
    nodes: &[&str],
    allowed: impl Fn(usize, usize) -> bool,
) -> Vec<Option<usize>> {
    use std::collections::HashMap;
    // The first address of each Service, then of each candidate's first Service.
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, c) in plan.candidates.iter().enumerate() {
        for s in &c.services {
            first
                .entry(s)
                .and_modify(|f| {
                    if ips[i] < ips[*f] {
                        *f = i
                    }
                })
                .or_insert(i);
        }
    }
    let anchor: Vec<usize> =
        plan.candidates.iter().enumerate().map(|(i, c)| c.services.first().map_or(i, |s| first[s.as_str()])).collect();
    let leaders: Vec<usize> = (0..ips.len()).filter(|i| anchor[*i] == *i).collect();
    let leader_ips: Vec<IpAddr> = leaders.iter().map(|i| ips[*i]).collect();
    let mut owners = vec![None; ips.len()];
    for (k, o) in assign(&leader_ips, nodes, |k, n| allowed(leaders[k], n)).into_iter().enumerate() {
        owners[leaders[k]] = o;
    }
    let mut rest = Vec::new();
    for i in (0..ips.len()).filter(|i| anchor[*i] != *i) {
        match owners[anchor[i]] {
            Some(n) if allowed(i, n) => owners[i] = Some(n),
            _ => rest.push(i),
        }
    }
    let rest_ips: Vec<IpAddr> = rest.iter().map(|i| ips[*i]).collect();
    for (k, o) in assign(&rest_ips, nodes, |k, n| allowed(rest[k], n)).into_iter().enumerate() {
        owners[rest[k]] = o;
    }
    owners
}

/// The rendezvous score: BLAKE3, so that every version and platform agrees.
pub fn score(node: &str, ip: IpAddr) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(node.as_bytes());
    h.update(&[0]);
    match ip {
        IpAddr::V4(v4) => h.update(&v4.octets()),
        IpAddr::V6(v6) => h.update(&v6.octets()),
    };
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default())
}

/// Owners of `ips` among `nodes` (names, sorted or not). `eligible(i, n)` says whether
/// node `n` may announce `ips[i]`. Returns, per address, the index of its owner, or
/// `None` when no node is eligible.
///
/// Addresses are placed in a fixed order (by their own hash), each on its highest-scoring
/// eligible node that has fewer than `ceil(addresses / nodes) + 1`; when all eligible
/// nodes are full, on the highest-scoring one.
pub fn assign(ips: &[IpAddr], nodes: &[&str], eligible: impl Fn(usize, usize) -> bool) -> Vec<Option<usize>> {
    let mut owners = vec![None; ips.len()];
    if nodes.is_empty() {
        return owners;
    }
    // Only nodes that may take something share the load: a member in hold-down must not
    // change how the others split theirs.
    let serving = (0..nodes.len()).filter(|n| (0..ips.len()).any(|i| eligible(i, *n))).count().max(1);
    let cap = ips.len().div_ceil(serving) + 1;
    let mut load = vec![0usize; nodes.len()];
    let mut order: Vec<(u64, usize)> = ips.iter().enumerate().map(|(i, ip)| (score("", *ip), i)).collect();
    order.sort_unstable();
    let mut ranked: Vec<(u64, usize)> = Vec::with_capacity(nodes.len());
    for (_, i) in order {
        ranked.clear();
        ranked.extend((0..nodes.len()).filter(|n| eligible(i, *n)).map(|n| (score(nodes[n], ips[i]), n)));
        // Highest score first; names break the (astronomically unlikely) ties.
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| nodes[a.1].cmp(nodes[b.1])));
        let Some(first) = ranked.first() else { continue };
        let n = ranked.iter().find(|(_, n)| load[*n] < cap).unwrap_or(first).1;
        load[n] += 1;
        owners[i] = Some(n);
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ips(n: u32) -> Vec<IpAddr> {
        (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 10)) + i))).collect()
    }

    fn counts(owners: &[Option<usize>], nodes: usize) -> Vec<usize> {
        let mut c = vec![0; nodes];
        for o in owners.iter().flatten() {
            c[*o] += 1;
        }
        c
    }

    fn member(name: &str, settled: bool) -> Member {
        Member { name: name.into(), labels: NodeInfo::new(name).labels, settled }
    }

    fn plan(n: usize) -> Plan {
        let mut text = String::from(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec:\n  nodeSelectors: [{matchExpressions: [{key: kubernetes.io/hostname, operator: NotIn, values: [gpu]}]}]\n",
        );
        for i in 0..n {
            text.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"));
        }
        let config = crate::config::load("t.yaml", &text).unwrap().config;
        let allocation = crate::allocate_all(&config, None);
        Plan::new(&config, &allocation.assigned)
    }

    /// MetalLB v0.16's preferredNodeSelectors: the live node with the highest summed
    /// weight announces every address; when it goes, the next; settled members still
    /// come before one in hold-down, however preferred.
    #[test]
    fn preferred_nodes_announce_first() {
        let mut text = String::from(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/28]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec:\n  interfaces: [eth9]\n  preferredNodeSelectors:\n  - {weight: 50, preference: {matchLabels: {kubernetes.io/hostname: b}}}\n  - {weight: 20, preference: {matchLabels: {kubernetes.io/hostname: c}}}\n  - {weight: 40, preference: {matchLabels: {rack: r1}}}\n",
        );
        for i in 0..8 {
            text.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"));
        }
        let config = crate::config::load("t.yaml", &text).unwrap().config;
        let allocation = crate::allocate_all(&config, None);
        let plan = Plan::new(&config, &allocation.assigned);
        let owners = |members: &[Member]| -> std::collections::BTreeSet<Option<String>> {
            decide(&plan, members, "a").0.into_iter().collect()
        };
        let mut c = member("c", true);
        c.labels.insert("rack".into(), "r1".into());
        let all = [member("a", true), member("b", true), c.clone(), member("d", true)];
        // c: 20 + 40 beats b: 50.
        assert_eq!(owners(&all), [Some("c".to_string())].into());
        assert_eq!(owners(&[member("a", true), member("b", true), member("d", true)]), [Some("b".to_string())].into());
        // Without any preferred node, the usual spread.
        assert!(owners(&[member("a", true), member("d", true)]).len() == 2);
        // A preferred node in hold-down waits behind the settled ones.
        let mut waiting = c;
        waiting.settled = false;
        assert_eq!(owners(&[member("b", true), waiting]), [Some("b".to_string())].into());
        // Interfaces do not take part in the election, as MetalLB documents: `a`, which
        // may have no eth9, is elected like any node, and its announcement names eth9.
        let (_, mine) = decide(&plan, &[member("a", true)], "a");
        assert_eq!(mine.len(), 8);
        assert!(mine.iter().all(|m| m.interfaces == Some(["eth9".to_string()].into())));
    }

    /// A dual-stack Service: both addresses on one node, whichever members are live.
    #[test]
    fn a_services_addresses_share_one_owner() {
        let mut text = String::from(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24, '2001:db8:100::/120']}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\n",
        );
        for i in 0..20 {
            text.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\nspec: {{type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], ports: [{{port: 80}}]}}\n"));
        }
        let config = crate::config::load("t.yaml", &text).unwrap().config;
        let allocation = crate::allocate_all(&config, None);
        let plan = Plan::new(&config, &allocation.assigned);
        assert_eq!(plan.candidates.len(), 40);
        for live in [&["a", "b", "c"][..], &["a", "c"], &["b", "c", "d", "e"]] {
            let members: Vec<Member> = live.iter().map(|n| member(n, true)).collect();
            let (owners, _) = decide(&plan, &members, "a");
            let mut by_service: std::collections::BTreeMap<&str, std::collections::BTreeSet<&Option<String>>> =
                Default::default();
            for (c, o) in plan.candidates.iter().zip(&owners) {
                by_service.entry(c.services[0].as_str()).or_default().insert(o);
            }
            assert!(by_service.values().all(|o| o.len() == 1), "{live:?}: {by_service:?}");
        }
    }

    #[test]
    fn every_member_decides_the_same_and_each_announces_its_own_share() {
        let plan = plan(30);
        let members = [member("a", true), member("b", true), member("c", true), member("gpu", true)];
        let (owners, _) = decide(&plan, &members, "a");
        assert!(owners.iter().all(|o| o.as_deref().is_some_and(|n| n != "gpu")), "gpu is not selected");
        let mut total = 0;
        for m in &members {
            let (theirs, mine) = decide(&plan, &members, &m.name);
            assert_eq!(theirs, owners);
            let expected: Vec<_> = plan
                .candidates
                .iter()
                .zip(&owners)
                .filter(|(_, o)| o.as_deref() == Some(&m.name))
                .map(|(c, _)| c.ip)
                .collect();
            assert_eq!(mine.iter().map(|a| a.ip).collect::<Vec<_>>(), expected);
            total += mine.len();
        }
        assert_eq!(total, 30);
    }

    #[test]
    fn members_in_hold_down_get_only_what_nobody_settled_can_take() {
        let plan = plan(12);
        let (owners, mine) = decide(&plan, &[member("a", false), member("b", true)], "a");
        assert!(mine.is_empty());
        assert!(owners.iter().all(|o| o.as_deref() == Some("b")));
        // Only the settling member is eligible: it serves rather than leaving addresses dark.
        let (owners, mine) = decide(&plan, &[member("a", false), member("gpu", true)], "a");
        assert_eq!(mine.len(), 12);
        assert!(owners.iter().all(|o| o.as_deref() == Some("a")));
        let mut excluded = member("a", true);
        excluded.labels.insert(crate::api::LABEL_EXCLUDE_FROM_LB.into(), String::new());
        let (owners, _) = decide(&plan, &[excluded, member("gpu", true)], "a");
        assert!(owners.iter().all(Option::is_none));
    }

    #[test]
    fn a_node_eligible_for_nothing_changes_nothing() {
        let two = assign(&ips(12), &["a", "c"], |_, _| true);
        let three = assign(&ips(12), &["a", "b", "c"], |_, n| n != 1);
        let names = |o: &[Option<usize>], ns: &[&'static str]| o.iter().map(|x| ns[x.unwrap()]).collect::<Vec<_>>();
        assert_eq!(names(&two, &["a", "c"]), names(&three, &["a", "b", "c"]));
    }

    #[test]
    fn thirty_addresses_spread_within_two_of_even_on_three_nodes() {
        for names in [["node-a", "node-b", "node-c"], ["k3s-1", "k3s-2", "k3s-3"], ["pi4", "pi5", "nuc"]] {
            let owners = assign(&ips(30), &names, |_, _| true);
            for c in counts(&owners, 3) {
                assert!((8..=12).contains(&c), "{names:?}: {:?}", counts(&owners, 3));
            }
        }
    }

    #[test]
    fn the_order_nodes_are_listed_in_does_not_matter() {
        let a = assign(&ips(50), &["x", "y", "z"], |_, _| true);
        let b = assign(&ips(50), &["z", "x", "y"], |_, _| true);
        let names_a: Vec<_> = a.iter().map(|o| ["x", "y", "z"][o.unwrap()]).collect();
        let names_b: Vec<_> = b.iter().map(|o| ["z", "x", "y"][o.unwrap()]).collect();
        assert_eq!(names_a, names_b);
    }

    #[test]
    fn ineligible_nodes_get_nothing_and_unservable_addresses_no_owner() {
        let owners = assign(&ips(20), &["a", "b", "c"], |i, n| n != 1 && i != 3);
        assert_eq!(owners[3], None);
        assert!(owners.iter().enumerate().all(|(i, o)| i == 3 || matches!(o, Some(0 | 2))));
    }

    proptest! {
        /// Removing one node moves its addresses, and few others: at most a tenth of the
        /// rest plus one (the load bound's cascade), never the majority.
        #[test]
        fn removing_a_node_moves_mostly_its_own_addresses(n_ips in 1u32..200, n_nodes in 2usize..8, gone in 0usize..8) {
            let gone = gone % n_nodes;
            let names: Vec<String> = (0..n_nodes).map(|i| format!("node-{i}")).collect();
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            let rest: Vec<&str> = all.iter().copied().filter(|n| *n != all[gone]).collect();
            let addrs = ips(n_ips);
            let before = assign(&addrs, &all, |_, _| true);
            let after = assign(&addrs, &rest, |_, _| true);
            let mut moved_others = 0;
            for (b, a) in before.iter().zip(&after) {
                let (b, a) = (all[b.unwrap()], rest[a.unwrap()]);
                if b != all[gone] && b != a {
                    moved_others += 1;
                }
            }
            prop_assert!(moved_others <= n_ips as usize / 10 + 1, "{moved_others} others moved");
        }

        #[test]
        fn every_address_gets_an_eligible_owner_and_loads_are_bounded(n_ips in 0u32..300, n_nodes in 1usize..10) {
            let names: Vec<String> = (0..n_nodes).map(|i| format!("n{i}")).collect();
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            let owners = assign(&ips(n_ips), &all, |_, _| true);
            prop_assert!(owners.iter().all(Option::is_some));
            let cap = (n_ips as usize).div_ceil(n_nodes) + 1;
            prop_assert!(counts(&owners, n_nodes).iter().all(|c| *c <= cap));
        }
    }
}
