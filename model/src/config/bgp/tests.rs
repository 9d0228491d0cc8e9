//! BGP objects as MetalLB reads them. Expectations cite internal/config/config.go at
//! MetalLB 7938d3f89 (`peerFromCR` 398-498, `bfdProfileFromCR` 643-678,
//! `bgpAdvertisementFromCR` 836-918, `parseTimers` 940-972, `validateBGPAdvPerPool`
//! 974-1010) and internal/bgp/community/community.go (`New`).

use std::time::Duration;

use super::*;
use crate::config::{Issue, Loaded, NodeInfo, ServiceAddresses, load};

macro_rules! sample {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/fixtures/metallb/", $name, ".yaml"))
    };
}

/// The pools MetalLB's BGP samples name.
const POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bgp-with-advertisement, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/28]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: test-addresspool, namespace: metallb-system, labels: {test: bgp-with-advertisement}}\nspec: {addresses: [203.0.113.64/27]}\n";

fn loads(parts: &[&str]) -> Loaded {
    let text = parts.join("\n---\n");
    load("bgp.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn errors(parts: &[&str]) -> Vec<Issue> {
    match load("bgp.yaml", &parts.join("\n---\n")) {
        Err(crate::Error::InvalidConfig(issues)) => issues,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const PEER: &str = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: router, namespace: metallb-system}\nspec:\n  myASN: 64512\n";

fn peer_with(extra: &str) -> String {
    format!("{PEER}{extra}")
}

#[test]
fn metallbs_bgp_samples_load_as_metallb_reads_them() {
    let simple = loads(&[sample!("bgppeer_simple")]).config.bgp;
    let p = &simple.peers[0];
    assert_eq!((p.my_asn, p.asn), (64512, PeerAsn::Fixed(64512)));
    assert_eq!(p.address, Some("172.30.0.3".parse().unwrap()));
    assert_eq!((p.port, p.timers, p.password.as_ref()), (179, None, None), "MetalLB's defaults");

    let bfd = loads(&[sample!("bgppeer_with_bfdprofile")]).config.bgp;
    let profile = bfd.bfd_profiles["testbfdprofile"];
    assert_eq!((profile.receive_interval, profile.transmit_interval), (380, 270));
    assert_eq!((profile.detect_multiplier, profile.minimum_ttl, profile.echo_mode), (3, 254, false));
    assert_eq!(bfd.peers[0].bfd_profile.as_deref(), Some("testbfdprofile"));

    let options = loads(&[sample!("bgppeer_with_session_options")]).config.bgp;
    assert_eq!(options.peers[0].connect_time, Some(Duration::from_secs(120)));
    assert_eq!(loads(&[sample!("bgppeer_with_vrf")]).config.bgp.peers[0].vrf.as_deref(), Some("red"));

    let alias = loads(&[POOLS, sample!("bgpadvertisement_community_alias")]).config.bgp;
    assert_eq!(alias.advertisements[0].communities, [CommunityValue::Standard(65535, 65282)].into());
    let localpref = loads(&[POOLS, sample!("bgpadvertisement_communities_localpref")]).config.bgp;
    assert_eq!(localpref.advertisements[0].local_pref, 150);
    assert_eq!(localpref.advertisements[0].communities, alias.advertisements[0].communities);

    let nodes = loads(&[POOLS, sample!("bgpadvertisement_with_node_selector")]).config.bgp;
    assert_eq!(nodes.advertisements[0].node_selectors.len(), 2);
    let by_label = loads(&[POOLS, sample!("bgpadv_selectspool_by_label")]).config;
    let covered: Vec<&str> = by_label
        .pools
        .iter()
        .filter(|p| advertises(&by_label.bgp.advertisements[0], p))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(covered, ["test-addresspool"]);

    // An advertisement to a peer that does not exist is accepted (MetalLB announces to
    // no such peer); the file says so.
    let by_list = loads(&[POOLS, sample!("bgpadv_selectspool_by_list")]);
    assert_eq!(by_list.config.bgp.advertisements[0].peers, ["ebgp-single-hop0"]);
    assert!(by_list.warnings.iter().any(|w| w.field == "spec.peers[0]"), "{:?}", by_list.warnings);

    // The minimal sample: an advertisement without a spec, every pool, no aggregation.
    let minimal = loads(&[sample!("simple_pool_adv_bgp")]);
    let adv = &minimal.config.bgp.advertisements[0];
    assert_eq!((adv.aggregation_length, adv.aggregation_length_v6), (32, 128));
    assert!(advertises(adv, &minimal.config.pools[0]));
    assert!(!minimal.warnings.iter().any(|w| w.message.contains("no L2Advertisement")), "a BGPAdvertisement announces");
}

/// `passwordSecret` names a Secret of type basic-auth (`passwordFromSecretForPeer`);
/// without it MetalLB waits (a transient error), and a file has nothing to wait for.
#[test]
fn a_password_secret_must_be_in_the_file_and_basic_auth() {
    let errs = errors(&[sample!("bgppeer_withsecret")]);
    assert_eq!(errs[0].object, "bgp.yaml: document 1 (BGPPeer metallb-system/peer-with-secret)");
    assert_eq!(errs[0].field, "spec.passwordSecret.name");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: secretname, namespace: metallb-system}\ntype: kubernetes.io/basic-auth\nstringData: {password: s3cret}\n";
    let loaded = loads(&[sample!("bgppeer_withsecret"), secret]).config.bgp;
    let p = &loaded.peers[0];
    assert_eq!(p.password, Some(Password::Secret("secretname".into())));
    // holdTime 9m0s with keepaliveTime 0s, as given.
    assert_eq!(p.timers, Some((Duration::from_secs(540), Duration::ZERO)));
    let opaque = secret.replace("kubernetes.io/basic-auth", "Opaque");
    assert_eq!(errors(&[sample!("bgppeer_withsecret"), &opaque])[0].field, "spec.passwordSecret.name");
}

#[test]
fn invalid_peers_are_refused_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "peerASN: 64513\n  dynamicASN: external\n  peerAddress: 192.0.2.1\n",
            "spec.dynamicASN",
            "both peer ASN and dynamicASN",
        ),
        ("peerAddress: 192.0.2.1\n", "spec.peerASN", "missing peer ASN and dynamicASN"),
        ("dynamicASN: sideways\n  peerAddress: 192.0.2.1\n", "spec.dynamicASN", "invalid dynamicASN sideways"),
        ("peerASN: 64513\n", "spec.peerAddress", "no Address or Interface"),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  interface: eth1\n",
            "spec.interface",
            "both Address and Interface",
        ),
        ("peerASN: 64513\n  peerAddress: 192.0.2.300\n", "spec.peerAddress", "invalid BGPPeer address"),
        ("peerASN: 64512\n  peerAddress: 192.0.2.1\n  ebgpMultiHop: true\n", "spec.ebgpMultiHop", "ibgp peer"),
        ("peerASN: 64513\n  peerAddress: 192.0.2.1\n  holdTime: 2s\n", "spec.holdTime", "must be 0 or >=3s"),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  holdTime: 30s\n  keepaliveTime: 40s\n",
            "spec.holdTime",
            "must be lower than holdTime",
        ),
        ("peerASN: 64513\n  peerAddress: 192.0.2.1\n  holdTime: soon\n", "spec.holdTime", "invalid duration"),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  connectTime: 1500ms\n",
            "spec.connectTime",
            "whole number of seconds",
        ),
        ("peerASN: 64513\n  peerAddress: 192.0.2.1\n  routerID: router-1\n", "spec.routerID", "invalid router ID"),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  routerID: '2001:db8::1'\n",
            "spec.routerID",
            "a router ID is an IPv4 address",
        ),
        ("peerASN: 64513\n  peerAddress: 192.0.2.1\n  holdTime: 20h\n", "spec.holdTime", "above 65535 s"),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  bfdProfile: fast\n",
            "spec.bfdProfile",
            "non existing bfd profile fast",
        ),
        (
            "peerASN: 64513\n  peerAddress: 192.0.2.1\n  password: a\n  passwordSecret: {name: s}\n",
            "spec.password",
            "both password and secret ref",
        ),
    ];
    for (extra, field, message) in cases {
        let errs = errors(&[&peer_with(&format!("  {extra}"))]);
        assert_eq!(errs.len(), 1, "{extra}: {errs:?}");
        assert_eq!(errs[0].field, *field, "{extra}");
        assert!(errs[0].message.contains(message), "{extra}: {}", errs[0].message);
    }
    let dynamic = loads(&[&peer_with("  dynamicASN: internal\n  interface: eth1\n")]).config.bgp;
    assert_eq!(dynamic.peers[0].asn, PeerAsn::Dynamic { internal: true });
    assert_eq!((dynamic.peers[0].address, dynamic.peers[0].interface.as_deref()), (None, Some("eth1")));
    // One timer given: the other derived (keepalive = hold / 3).
    let hold = loads(&[&peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n  holdTime: 90s\n")]).config.bgp;
    assert_eq!(hold.peers[0].timers, Some((Duration::from_secs(90), Duration::from_secs(30))));
    let keep = loads(&[&peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n  keepaliveTime: 10s\n")]).config.bgp;
    assert_eq!(keep.peers[0].timers, Some((Duration::from_secs(30), Duration::from_secs(10))));
}

#[test]
fn invalid_advertisements_and_profiles_are_refused_naming_the_field() {
    let adv = |spec: &str| {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: a, namespace: metallb-system}}\nspec: {spec}\n"
        )
    };
    let cases: &[(String, &str, &str)] = &[
        // A /24 pool announced as a /16 would claim addresses outside it.
        (adv("{aggregationLength: 16, ipAddressPools: [bgp-with-advertisement]}"), "spec.aggregationLength", "more specific than the aggregation length"),
        (adv("{aggregationLength: 33}"), "spec.aggregationLength", "invalid aggregation length 33 for IPv4"),
        (adv("{aggregationLengthV6: 129}"), "spec.aggregationLengthV6", "invalid aggregation length 129 for IPv6"),
        (adv("{communities: ['65536:1']}"), "spec.communities[0]", "invalid section \"65536\""),
        (adv("{communities: ['large:1:2']}"), "spec.communities[0]", "no Community object names"),
        (adv("{communities: ['big:1:2:3']}"), "spec.communities[0]", "invalid marker for large community"),
        (adv("{communities: [NO_EXPORT]}"), "spec.communities[0]", "no Community object names \"NO_EXPORT\""),
        (adv("{ipAddressPools: [first-pool, first-pool]}"), "spec.ipAddressPools[1]", "duplicate"),
        (adv("{aggregationLength: 30, serviceSelectors: [{matchLabels: {a: b}}]}"), "spec.aggregationLength", "mutually exclusive"),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\nspec: {receiveInterval: 5}\n".into(),
            "spec.receiveInterval",
            "between 10 and 60000",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\nspec: {detectMultiplier: 1}\n".into(),
            "spec.detectMultiplier",
            "between 2 and 255",
        ),
        (
            "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c, namespace: metallb-system}\nspec: {communities: [{name: X, value: 'a:b'}]}\n".into(),
            "spec.communities[0].value",
            "invalid section",
        ),
    ];
    for (object, field, message) in cases {
        let errs = errors(&[POOLS, object]);
        assert_eq!(errs.len(), 1, "{object}: {errs:?}");
        assert_eq!(errs[0].field, *field, "{object}");
        assert!(errs[0].message.contains(message), "{object}: {}", errs[0].message);
    }
    let large = loads(&[
        POOLS,
        &adv("{communities: ['large:64512:1:2'], aggregationLength: 24, ipAddressPools: [bgp-with-advertisement]}"),
    ])
    .config
    .bgp;
    assert_eq!(large.advertisements[0].communities, [CommunityValue::Large(64512, 1, 2)].into());
    assert_eq!(large.advertisements[0].aggregation_length, 24, "a /24 pool may be announced as one /24");
}

#[test]
fn go_durations_read_as_kubernetes_writes_them() {
    let ok = [
        ("90s", 90_000),
        ("9m0s", 540_000),
        ("1h", 3_600_000),
        ("1.5s", 1_500),
        ("300ms", 300),
        ("2m30s", 150_000),
        ("0s", 0),
        ("0", 0),
    ];
    for (text, ms) in ok {
        assert_eq!(parse_go_duration(text), Ok(Duration::from_millis(ms)), "{text}");
    }
    for bad in ["", "90", "s", "1x", "-5s", "1..5s", "5 s"] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_ranges_widest_prefix_is_that_of_its_largest_aligned_block() {
    let widest = |s: &str| s.parse::<crate::range::IpRange>().unwrap().widest_prefix();
    assert_eq!(widest("198.51.100.0/24"), 24);
    assert_eq!(widest("198.51.100.7/32"), 32);
    assert_eq!(widest("198.51.100.0-198.51.100.255"), 24);
    // .1-.5: .1/32, .2/31, .4/31: the widest block is a /31.
    assert_eq!(widest("192.168.9.1-192.168.9.5"), 31);
    assert_eq!(widest("198.51.100.0-198.51.101.127"), 24);
    assert_eq!(widest("2001:db8::/124"), 124);
    assert_eq!(widest("0.0.0.0/0"), 0);
    assert_eq!(widest("::/0"), 0);
}

/// Who announces (speaker/bgp_controller.go:155-200, 325-350): every selected node, not
/// one owner; Local-policy Services only where an endpoint is ready, Cluster ones while
/// any is; excluded nodes never; addresses aggregated to the advertisement's length.
#[test]
fn routes_follow_metallbs_should_announce() {
    let text = format!(
        "{POOLS}---\n{}---\n{}---\n{}---\n{}",
        peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n"),
        peer_with("  peerASN: 64514\n  peerAddress: 192.0.2.2\n  nodeSelectors: [{matchLabels: {rack: a}}]\n")
            .replace("name: router", "name: rack-a"),
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: agg, namespace: metallb-system}\nspec: {ipAddressPools: [bgp-with-advertisement], aggregationLength: 24, localPref: 50, communities: ['64512:7'], nodeSelectors: [{matchExpressions: [{key: kubernetes.io/hostname, operator: NotIn, values: [n3]}]}]}\n",
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: web, namespace: metallb-system}\nspec: {ipAddressPools: [first-pool], peers: [rack-a], serviceSelectors: [{matchLabels: {app: web}}]}\n",
    );
    let services = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default, labels: {app: web}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: default}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    let config = loads(&[&text, services]).config;
    let held = |service: &str, pool: &str, ip: &str| ServiceAddresses {
        service: format!("default/{service}"),
        pool: pool.into(),
        addresses: vec![ip.parse().unwrap()],
    };
    let assigned = [
        held("a", "bgp-with-advertisement", "198.51.100.7"),
        held("b", "bgp-with-advertisement", "198.51.100.9"),
        held("web", "first-pool", "203.0.113.3"),
        held("other", "first-pool", "203.0.113.4"),
    ];
    let node = |name: &str, extra: &[(&str, &str)]| {
        let mut n = NodeInfo::new(name);
        n.labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        n
    };
    let everywhere = |_: &str| Endpoints { any_ready: true, ready_here: true };
    let n1 = routes(&config, &assigned, &node("n1", &[("rack", "a")]), everywhere);
    let shown: Vec<String> =
        n1.iter().map(|r| format!("{}/{} {:?} {}", r.prefix, r.length, r.peers, r.local_pref)).collect();
    // a and b aggregate into one /24; `web` is selected by label, `other` is not.
    assert_eq!(shown, ["198.51.100.0/24 [] 50", "203.0.113.3/32 [\"rack-a\"] 0"]);
    assert_eq!(n1[0].communities, [CommunityValue::Standard(64512, 7)]);
    // n3 is not selected by the aggregating advertisement.
    let n3 = routes(&config, &assigned, &node("n3", &[]), everywhere);
    assert_eq!(n3.iter().map(|r| r.length).collect::<Vec<_>>(), [32]);
    // Local policy: `a` only where its endpoint is ready; `b` (Cluster) while any is.
    let elsewhere = |_: &str| Endpoints { any_ready: true, ready_here: false };
    assert!(routes(&config, &assigned[..1], &node("n1", &[]), elsewhere).is_empty(), "a: Local, no endpoint here");
    assert_eq!(routes(&config, &assigned[..1], &node("n1", &[]), everywhere).len(), 1, "a: Local, endpoint here");
    assert_eq!(
        routes(&config, &assigned[1..2], &node("n1", &[]), elsewhere).len(),
        1,
        "b: Cluster, endpoint elsewhere"
    );
    let none = routes(&config, &assigned[1..2], &node("n1", &[]), |_: &str| Endpoints::default());
    assert!(none.is_empty(), "no ready endpoint anywhere: nothing");
    let excluded = node("n1", &[(crate::api::LABEL_EXCLUDE_FROM_LB, "")]);
    assert!(routes(&config, &assigned, &excluded, everywhere).is_empty());
    // Sessions: the rack-a peer only from rack a.
    let names = |n: &NodeInfo| peers_for_node(&config.bgp, n).iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&node("n1", &[("rack", "a")])), ["router", "rack-a"]);
    assert_eq!(names(&node("n2", &[])), ["router"]);
}

/// The plan a speaker keeps carries BGP's part: the routes of any node, with the ready
/// endpoints a cluster knows (a file knows none: ready everywhere); only the Services with
/// addresses and only the passwords a peer uses are kept.
#[test]
fn the_plan_decides_any_nodes_routes() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: pw, namespace: metallb-system}\ntype: kubernetes.io/basic-auth\ndata: {password: c2VjcmV0}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: unused, namespace: metallb-system}\ntype: kubernetes.io/basic-auth\nstringData: {password: other}\n";
    let text = format!(
        "{POOLS}---\n{}---\n{secret}---\n{}",
        peer_with(
            "  peerASN: 64513\n  peerAddress: 192.0.2.1\n  passwordSecret: {name: pw, namespace: metallb-system}\n"
        ),
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: all, namespace: metallb-system}\n",
    );
    let services = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: none, namespace: default}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    let config = loads(&[&text, services]).config;
    let assigned = [ServiceAddresses {
        service: "default/a".into(),
        pool: "first-pool".into(),
        addresses: vec!["203.0.113.3".parse().unwrap()],
    }];
    let plan = crate::config::Plan::new(&config, &assigned);
    let bgp = plan.bgp.as_deref().expect("BGP objects configured: the plan has a BGP part");
    assert_eq!(bgp.config.services.len(), 1, "only Services with addresses are kept");
    assert_eq!(bgp.config.bgp.passwords.0, [("pw".to_string(), "secret".to_string())].into());
    assert_eq!(format!("{:?}", bgp.config.bgp.passwords), "{\"pw\"}", "Debug shows no password");
    let (n1, n2) = (NodeInfo::new("n1"), NodeInfo::new("n2"));
    assert_eq!(bgp.routes(&n1).len(), 1, "a file: ready everywhere");
    let mut in_cluster = bgp.clone();
    let ready = super::Ready { any: true, nodes: ["n2".to_string()].into() };
    in_cluster.ready = Some([("default/a".to_string(), ready)].into());
    assert!(in_cluster.routes(&n1).is_empty(), "Local: no ready endpoint on n1");
    assert_eq!(in_cluster.routes(&n2).len(), 1);
    assert_eq!(bgp.peers(&n1).len(), 1);
    // Without BGP objects, no BGP part.
    let l2_only = loads(&[POOLS]).config;
    assert!(crate::config::Plan::new(&l2_only, &[]).bgp.is_none());
}

/// Two advertisements may not give one update two LOCAL_PREFs (`validateBGPAdvPerPool`'s
/// second half, config.go:996-1008, and `BGPAdvertisementsHaveCompatibleLocalPref`); other
/// aggregation lengths or disjoint peers make them different updates.
#[test]
fn conflicting_local_preferences_are_refused() {
    let adv = |name: &str, spec: &str| {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {spec}\n"
        )
    };
    let pool = "{ipAddressPools: [bgp-with-advertisement]";
    let errs = errors(&[
        POOLS,
        &adv("a", &format!("{pool}, localPref: 100}}")),
        &adv("b", &format!("{pool}, localPref: 200}}")),
    ]);
    assert_eq!((errs.len(), errs[0].field.as_str()), (1, "spec.localPref"), "{errs:?}");
    assert!(
        errs[0].message.contains("local preference 100 was already set by BGPAdvertisement \"a\""),
        "{}",
        errs[0].message
    );
    loads(&[
        POOLS,
        &adv("a", &format!("{pool}, localPref: 100}}")),
        &adv("b", &format!("{pool}, localPref: 200, aggregationLength: 24}}")),
    ]);
    loads(&[
        POOLS,
        &adv("a", &format!("{pool}, localPref: 100, peers: [tor-a]}}")),
        &adv("b", &format!("{pool}, localPref: 200, peers: [tor-b]}}")),
    ]);
    // aggregationLengthV6 has no lower bound (config.go:886-889).
    loads(&[POOLS, &adv("a", "{aggregationLengthV6: 0}")]);
}

/// Peers on the same nodes share one router ID and one ASN per VRF, and no session is
/// opened twice (`peersCanRunOnSameNode`, internal/config/validation.go:183-196).
#[test]
fn peers_on_the_same_nodes_must_fit_one_frr() {
    let second =
        |extra: &str| peer_with(&format!("  peerASN: 64513\n  {extra}\n")).replace("name: router", "name: second");
    let first = peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n  routerID: 192.0.2.10\n");
    let cases = [
        ("peerAddress: 192.0.2.2\n  routerID: 192.0.2.11", "spec.routerID"),
        ("peerAddress: 192.0.2.1", "spec.peerAddress"),
    ];
    for (extra, field) in cases {
        let errs = errors(&[&first, &second(extra)]);
        assert_eq!(errs[0].field, field, "{extra}: {errs:?}");
    }
    let other_asn = second("peerAddress: 192.0.2.2").replace("myASN: 64512", "myASN: 64600");
    assert_eq!(errors(&[&first, &other_asn])[0].field, "spec.myASN");
    // On other nodes (other selectors), or in another VRF, they may differ.
    loads(&[
        &first,
        &(second("peerAddress: 192.0.2.2\n  routerID: 192.0.2.11") + "  nodeSelectors: [{matchLabels: {rack: b}}]\n"),
    ]);
    loads(&[&first, &(other_asn + "  vrf: red\n")]);
}

/// A password FRR could not take as one word is refused, naming the field; `Debug` of a
/// peer never shows a password.
#[test]
fn passwords_fit_frr_and_stay_hidden() {
    let bad = errors(&[POOLS, &peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n  password: \"two words\"\n")]);
    assert!(bad.iter().any(|i| i.field == "spec.password"), "{bad:?}");
    let good = loads(&[POOLS, &peer_with("  peerASN: 64513\n  peerAddress: 192.0.2.1\n  password: s3cret\n")]);
    let shown = format!("{:?}", good.config.bgp.peers[0]);
    assert!(shown.contains("Clear(..)") && !shown.contains("s3cret"), "{shown}");
}
