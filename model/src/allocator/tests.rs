use std::collections::BTreeMap;

use crate::config::load;
use proptest::prelude::*;

use crate::api::ServiceAllocation;

use super::*;

fn r(s: &str) -> IpRange {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, ranges: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        namespace: "metallb-system".into(),
        labels: BTreeMap::new(),
        ranges: ranges.iter().map(|x| r(x)).collect(),
        auto_assign: true,
        avoid_buggy_ips: false,
        allocation: Default::default(),
    }
}

fn svc(name: &str) -> LoadBalancerService {
    LoadBalancerService {
        namespace: "web".into(),
        name: name.into(),
        type_: "LoadBalancer".into(),
        ports: vec![crate::api::ServicePort { port: 80, protocol: "TCP".into() }],
        ..Default::default()
    }
}

fn with(mut s: LoadBalancerService, k: &str, v: &str) -> LoadBalancerService {
    s.annotations.insert(k.into(), v.into());
    s
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn free_set_splits_and_merges() {
    let mut f = FreeSet::new(r("192.0.2.0/29"));
    assert!(f.take(ip_to_u128(ip("192.0.2.3"))));
    assert!(!f.take(ip_to_u128(ip("192.0.2.3"))));
    assert_eq!(f.intervals.len(), 2);
    f.release(ip_to_u128(ip("192.0.2.3")));
    assert_eq!(f.intervals.len(), 1);
    f.release(ip_to_u128(ip("192.0.2.3")));
    assert_eq!(f.intervals, BTreeMap::from([(ip_to_u128(ip("192.0.2.0")), ip_to_u128(ip("192.0.2.7")))]));
}

#[test]
fn a_slash_64_costs_what_is_allocated() {
    let mut a = Allocator::new(&[pool("v6", &["2001:db8::/64"])]);
    for i in 0..1000 {
        let mut s = svc(&format!("s{i}"));
        s.ip_families = vec!["IPv6".into()];
        a.assign(&s, &none()).unwrap();
    }
    assert_eq!(a.pools[0].blocks[0].free.intervals.len(), 1, "sequential allocation keeps one free interval");
    let u = a.usage("v6").unwrap();
    assert_eq!((u.total_v6, u.in_use_v6), (1 << 64, 1000));
    assert_eq!(a.addresses_of("web/s999"), [ip("2001:db8::3e7")]);
}

#[test]
fn whole_ipv6_space_saturates_instead_of_overflowing() {
    let a = Allocator::new(&[pool("all", &["::/0"])]);
    assert_eq!(a.usage("all").unwrap().total_v6, u128::MAX);
}

#[test]
fn avoid_buggy_ips_skips_dot_0_and_dot_255() {
    let mut p = pool("p", &["192.0.2.255-198.51.100.1"]);
    p.avoid_buggy_ips = true;
    let mut a = Allocator::new(&[p]);
    assert_eq!(a.assign(&svc("a"), &none()).unwrap().addresses, [ip("192.0.3.1")]);
    let err = a.assign(&with(svc("b"), "metallb.io/loadBalancerIPs", "192.0.3.255"), &none()).unwrap_err();
    assert!(matches!(err, AllocError::BuggyIp { .. }), "{err}");
}

#[test]
fn priority_then_name_and_auto_assign() {
    let mut low = pool("z-low", &["198.51.100.0/30"]);
    low.allocation = Some(ServiceAllocation { priority: Some(1), ..Default::default() });
    let unset = pool("a-unset", &["203.0.113.0/30"]);
    let mut manual = pool("b-manual", &["192.0.2.0/30"]);
    manual.auto_assign = false;
    let mut a = Allocator::new(&[unset, manual, low]);
    assert_eq!(a.assign(&svc("x"), &none()).unwrap().pool, "z-low");
    let by_name = with(svc("y"), "metallb.io/address-pool", "b-manual");
    assert_eq!(a.assign(&by_name, &none()).unwrap().addresses, [ip("192.0.2.0")]);
    assert!(matches!(
        a.assign(&with(svc("q"), "metallb.io/address-pool", "nope"), &none()),
        Err(AllocError::NoSuchPool(_))
    ));
}

#[test]
fn namespaces_restrict_a_pool() {
    let mut team = pool("team", &["198.51.100.0/30"]);
    team.allocation =
        Some(ServiceAllocation { namespaces: vec!["team-a".into()], priority: Some(0), ..Default::default() });
    let mut a = Allocator::new(&[team, pool("rest", &["203.0.113.0/30"])]);
    assert_eq!(a.assign(&svc("x"), &none()).unwrap().pool, "rest");
    let mut mine = svc("y");
    mine.namespace = "team-a".into();
    assert_eq!(a.assign(&mine, &none()).unwrap().pool, "team");
}

#[test]
fn dual_stack_policies() {
    let mut a = Allocator::new(&[
        pool("a-v4only", &["198.51.100.0/30"]),
        pool("b-dual", &["203.0.113.0/30", "2001:db8::/120"]),
        pool("c-v6only", &["2001:db8:1::/120"]),
    ]);
    // A single-stack IPv6 cluster: PreferDualStack gets the one family it has.
    let mut single = svc("single");
    single.ip_family_policy = Some("PreferDualStack".into());
    single.cluster_ips = vec![ip("2001:db8:ffff::1")];
    assert_eq!(a.assign(&single, &none()).unwrap().addresses, [ip("2001:db8::")]);
    // Dual-stack, IPv6 primary: the pool with both families wins, status IPv4 first.
    let mut prefer = svc("p");
    prefer.ip_family_policy = Some("PreferDualStack".into());
    prefer.ip_families = vec!["IPv6".into(), "IPv4".into()];
    prefer.cluster_ips = vec![ip("2001:db8:ffff::2"), ip("192.0.2.2")];
    assert_eq!(a.assign(&prefer, &none()).unwrap().addresses, [ip("203.0.113.0"), ip("2001:db8::1")]);
    // Without a dual pool, the primary family's pool (c-v6only), not the first by name.
    let mut b = Allocator::new(&[pool("a-v4only", &["198.51.100.0/30"]), pool("c-v6only", &["2001:db8:1::/120"])]);
    assert_eq!(b.assign(&prefer, &none()).unwrap().addresses, [ip("2001:db8:1::")]);
    let mut require = svc("r");
    require.ip_family_policy = Some("RequireDualStack".into());
    let got = a.assign(&require, &none()).unwrap();
    assert_eq!((got.pool.as_str(), got.addresses), ("b-dual", vec![ip("203.0.113.1"), ip("2001:db8::2")]));
    let pinned = with(require.clone(), "metallb.io/address-pool", "a-v4only");
    assert!(matches!(a.assign(&pinned, &none()), Err(AllocError::NotDualStack(_))));
    let mut one = require.clone();
    one.cluster_ips = vec![ip("192.0.2.3")];
    assert_eq!(a.assign(&one, &none()), Err(AllocError::NotDualStackCluster));
}

#[test]
fn tcp_and_udp_share_with_one_key_and_two_tcp_do_not() {
    let mut a = Allocator::new(&[pool("p", &["198.51.100.0/30"])]);
    let tcp = with(svc("dns-tcp"), "metallb.io/allow-shared-ip", "dns");
    let mut udp = with(svc("dns-udp"), "metallb.io/allow-shared-ip", "dns");
    udp.ports[0].protocol = "UDP".into();
    let first = a.assign(&tcp, &none()).unwrap().addresses;
    assert_eq!(a.assign(&udp, &none()).unwrap().addresses, first);
    let tcp2 =
        with(with(svc("dns-tcp2"), "metallb.io/allow-shared-ip", "dns"), "metallb.io/loadBalancerIPs", "198.51.100.0");
    let err = a.assign(&tcp2, &none()).unwrap_err();
    assert!(err.to_string().contains("both use port 80/TCP"), "{err}");
    // Releasing one sharer keeps the address taken for the other.
    a.release("web/dns-tcp");
    assert_eq!(a.usage("p").unwrap().in_use_v4, 1);
    a.release("web/dns-udp");
    assert_eq!(a.usage("p").unwrap().in_use_v4, 0);
}

#[test]
fn requested_outside_every_pool_is_refused() {
    let mut a = Allocator::new(&[pool("p", &["198.51.100.0/30"])]);
    let err = a.assign(&with(svc("x"), "metallb.io/loadBalancerIPs", "192.0.2.1"), &none()).unwrap_err();
    assert_eq!(err, AllocError::NotInAnyPool { ip: ip("192.0.2.1") });
}

#[test]
fn exhausted_pool_is_reported() {
    let mut a = Allocator::new(&[pool("p", &["198.51.100.0/31"])]);
    a.assign(&svc("a"), &none()).unwrap();
    a.assign(&svc("b"), &none()).unwrap();
    assert!(matches!(a.assign(&svc("c"), &none()), Err(AllocError::Exhausted { .. })));
}

#[test]
fn restart_keeps_addresses_in_use() {
    let pools = [pool("p", &["198.51.100.0/28"])];
    let mut first = Allocator::new(&pools);
    let services: Vec<_> = (0..5).map(|i| svc(&format!("s{i}"))).collect();
    let given: Vec<IpAddr> = services.iter().map(|s| first.assign(s, &none()).unwrap().addresses[0]).collect();
    // A restarted controller sees the status and a new Service listed first.
    let mut again = Allocator::new(&pools);
    let newcomer = svc("new");
    let with_status: Vec<_> = services
        .iter()
        .zip(&given)
        .map(|(s, ip)| LoadBalancerService { ingress_ips: vec![*ip], ..s.clone() })
        .collect();
    for s in &with_status {
        again.assign(s, &none()).unwrap();
    }
    let n = again.assign(&newcomer, &none()).unwrap().addresses[0];
    assert!(!given.contains(&n));
    for (s, ip) in with_status.iter().zip(&given) {
        assert_eq!(again.addresses_of(&s.key()), [*ip]);
    }
}

#[test]
fn office_fixture_gets_its_requested_address() {
    let text = include_str!("../../../tests/fixtures/users/legacy-configmap-office.yaml");
    let cfg = load("office.yaml", text).unwrap().config;
    let mut a = Allocator::new(&cfg.pools);
    let got = a.assign(&cfg.services[0], &none()).unwrap();
    assert_eq!((got.pool.as_str(), got.addresses), ("company-office", vec![ip("10.10.10.51")]));
}

fn arb_service(i: usize) -> impl Strategy<Value = LoadBalancerService> {
    (proptest::option::of(0u8..40), proptest::option::of(0u8..3), prop_oneof![Just("TCP"), Just("UDP")], 79i32..82)
        .prop_map(move |(req, key, proto, port)| {
            let mut s = svc(&format!("s{i}"));
            s.ports[0] = crate::api::ServicePort { port, protocol: proto.into() };
            if let Some(r) = req {
                s.annotations.insert("metallb.io/loadBalancerIPs".into(), format!("198.51.100.{r}"));
            }
            if let Some(k) = key {
                s.annotations.insert("metallb.io/allow-shared-ip".into(), format!("k{k}"));
            }
            s
        })
}

fn arb_services() -> impl Strategy<Value = Vec<LoadBalancerService>> {
    (1usize..40).prop_flat_map(|n| (0..n).map(arb_service).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn invariants_hold_for_any_services(services in arb_services(), split in 1u8..31) {
        let pools = [pool("a", &[&format!("198.51.100.0-198.51.100.{split}")]), pool("b", &[&format!("198.51.100.{}-198.51.100.31", split + 1)])];
        let mut a = Allocator::new(&pools);
        let mut results = Vec::new();
        for s in &services {
            results.push(a.assign(s, &none()).ok());
        }
        for (s, r) in services.iter().zip(&results) {
            let Some(r) = r else { continue };
            let p = pools.iter().find(|p| p.name == r.pool).unwrap();
            for ip in &r.addresses {
                prop_assert!(p.contains(*ip), "{ip} outside pool {}", p.name);
                for (o, ro) in services.iter().zip(&results) {
                    if o.key() != s.key() && ro.as_ref().is_some_and(|ro| ro.addresses.contains(ip)) {
                        prop_assert!(sharing_conflict(SharingProfile::of(s).as_ref(), SharingProfile::of(o).as_ref()).is_none(), "{ip} on {} and {} without sharing", s.key(), o.key());
                    }
                }
            }
        }
        // Re-running on the result (each Service now has its status) changes nothing.
        let mut again = Allocator::new(&pools);
        for (s, r) in services.iter().zip(&results) {
            let Some(r) = r else { continue };
            let with_status = LoadBalancerService { ingress_ips: r.addresses.clone(), ..s.clone() };
            prop_assert_eq!(&again.assign(&with_status, &none()).unwrap().addresses, &r.addresses);
        }
    }
}

#[test]
fn a_conflicting_status_claim_gets_a_new_address() {
    let mut a = Allocator::new(&[pool("p", &["198.51.100.0/30"])]);
    let holder = LoadBalancerService { ingress_ips: vec![ip("198.51.100.2")], ..svc("older") };
    let claimant = LoadBalancerService { ingress_ips: vec![ip("198.51.100.2")], ..svc("newer") };
    assert_eq!(a.assign(&holder, &none()).unwrap().addresses, [ip("198.51.100.2")]);
    assert_eq!(a.assign(&claimant, &none()).unwrap().addresses, [ip("198.51.100.0")]);
}

#[test]
fn a_status_address_outside_the_pools_now_is_reallocated() {
    let mut a = Allocator::new(&[pool("p", &["198.51.100.0/30"])]);
    let moved = LoadBalancerService { ingress_ips: vec![ip("203.0.113.9")], ..svc("s") };
    assert_eq!(a.assign(&moved, &none()).unwrap().addresses, [ip("198.51.100.0")]);
}

/// Rule 10 of issue 10: with avoidBuggyIPs, capacity leaves out .0 and .255 (MetalLB's
/// poolCount, internal/allocator/allocator.go:629) and they are never counted as assigned.
#[test]
fn avoid_buggy_ips_capacity_and_usage() {
    let mut p = pool("p", &["198.51.100.0/24", "203.0.113.250-203.0.114.5"]);
    p.avoid_buggy_ips = true;
    let mut a = Allocator::new(&[p]);
    // 256 - 2, and 12 - 2 (203.0.113.255 and 203.0.114.0).
    assert_eq!(a.usage("p").unwrap().total_v4, 254 + 10);
    for i in 0..264 {
        let got = a.assign(&svc(&format!("s{i}")), &none()).unwrap().addresses[0];
        assert!(!is_buggy_ip(got), "{got}");
    }
    assert_eq!(a.usage("p").unwrap().in_use_v4, 264);
    assert!(matches!(a.assign(&svc("one-too-many"), &none()), Err(AllocError::Exhausted { .. })));
    assert_eq!(a.usage("p").unwrap().in_use_v4, 264, "the skipped addresses are not counted as used");
}
