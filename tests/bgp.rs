//! BGP mode against routers we did not write: three nodes, each with its speaker driving
//! its own FRR (zebra, bgpd, bfdd), peer with a router namespace running BIRD 2 or GoBGP;
//! a client behind the router fetches through the Service's address. All in namespaces
//! made here, on documentation addresses.
//!
//! What is expected is MetalLB's: every node an advertisement selects announces the
//! Service's prefix (speaker/bgp_controller.go:155-200 at MetalLB 7938d3f89), so the router
//! holds one next hop per node (e2etest/bgptests/bgp.go: `validateService` checks every
//! node's next hop on the external router), and a node whose session dies is dropped.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferrolb_testkit::netns::{ClusterLan, Frr, NODE_ASN, ROUTER_ASN, Router, RouterKind, Speaker, WebServer, node_v4};

const VIP4: &str = "192.0.2.10";
const VIP6: &str = "2001:db8:192::10";
const PREFIX4: &str = "192.0.2.10/32";
const PREFIX6: &str = "2001:db8:192::10/128";

/// The objects every node reads: a pool, a BGPPeer for the router (hold time 3 s; IPv6
/// prefixes over the IPv4 session), an advertisement with a community, a dual-stack
/// Service; `extra` appended.
fn config(bfd: bool, password: Option<&str>, extra: &str) -> String {
    let mut peer = format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\nspec:\n  myASN: {NODE_ASN}\n  peerASN: {ROUTER_ASN}\n  peerAddress: 198.51.100.1\n  holdTime: 3s\n  keepaliveTime: 1s\n  connectTime: 1s\n  dualStackAddressFamily: true\n"
    );
    if bfd {
        peer += "  bfdProfile: fast\n";
    }
    if let Some(p) = password {
        peer += &format!("  password: {p}\n");
    }
    let mut c = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bgp, namespace: metallb-system}}\nspec:\n  addresses: [192.0.2.0/24, '2001:db8:192::/64']\n---\n{peer}---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: bgp, namespace: metallb-system}}\nspec:\n  communities: ['64512:100']\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n  annotations: {{metallb.io/loadBalancerIPs: '{VIP4},{VIP6}'}}\nspec:\n  type: LoadBalancer\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n  ports: [{{port: 80}}]\n"
    );
    if bfd {
        c += "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\nspec:\n  receiveInterval: 300\n  transmitInterval: 300\n  detectMultiplier: 3\n";
    }
    c + extra
}

/// Three nodes, each with FRR, a web server on the Service's addresses and a speaker; a
/// router of `kind` peering with them.
struct Bgp {
    // Dropped in this order: speakers, FRR, web servers, router, then the LAN.
    speakers: Vec<Speaker>,
    frrs: Vec<Frr>,
    _web: Vec<WebServer>,
    router: Router,
    lan: ClusterLan,
}

impl Bgp {
    fn start(kind: RouterKind, bfd: bool, router_password: Option<&str>, config: &str) -> Bgp {
        let lan = ClusterLan::new(3);
        let router = Router::start(&lan, kind, bfd, router_password);
        // The Service's addresses on an interface of their own, as kube-proxy's IPVS mode
        // holds them (kube-ipvs0, a dummy; an empty bridge here, the kernel having no dummy
        // module); not on `lo`, whose addresses FRR would take for its router ID.
        for ns in &lan.nodes {
            ns.ip(&["link", "add", "kube-ipvs0", "type", "bridge"]);
            ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "kube-ipvs0"]);
            ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "kube-ipvs0", "nodad"]);
            ns.ip(&["link", "set", "kube-ipvs0", "up"]);
        }
        let web: Vec<WebServer> =
            lan.nodes.iter().enumerate().map(|(i, ns)| WebServer::start(ns, &format!("node-{i}"))).collect();
        let frrs: Vec<Frr> = lan.nodes.iter().map(Frr::start).collect();
        let speakers = (0..3).map(|i| start_speaker(&lan, &frrs, i, config)).collect();
        Bgp { speakers, frrs, _web: web, router, lan }
    }

    /// Waits up to `timeout` for the router to hold `want` next hops for `prefix`; returns
    /// how long it took.
    fn wait_next_hops(&self, prefix: &str, want: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let hops = self.router.next_hops(prefix);
            if hops.len() == want {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "the router holds {hops:?} for {prefix} after {timeout:?}, not {want} next hops\n{}\n{}\n--- FRR of node 0:\n{}\n{}\n--- speaker 0:\n{}",
                    self.router.show_route(prefix),
                    self.router.log(),
                    self.frrs[0].vtysh("show running-config"),
                    self.frrs[0].logs(),
                    self.speakers.first().map(Speaker::log_text).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Which nodes answered `n` fetches of `url` from the client behind the router.
    fn fetch_nodes(&self, url: &str, n: usize) -> (BTreeSet<String>, usize) {
        let mut nodes = BTreeSet::new();
        let mut failed = 0;
        for _ in 0..n {
            match self.router.fetch(url) {
                Some(body) => {
                    nodes.insert(body);
                }
                None => failed += 1,
            }
        }
        (nodes, failed)
    }
}

fn start_speaker(lan: &ClusterLan, frrs: &[Frr], i: usize, config: &str) -> Speaker {
    let name = format!("node-{i}");
    let mut args = vec!["--node-name".to_string(), name];
    args.extend(frrs[i].speaker_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Speaker::start(&lan.nodes[i], config, &refs)
}

/// The nodes' next hops as the router must hold them (IPv4).
fn every_node() -> Vec<String> {
    let mut v: Vec<String> = (0..3).map(node_v4).collect();
    v.sort();
    v
}

/// The stories of one router: ECMP over the three nodes for both families, the client's
/// fetches through the address, a node cut off withdrawn (the time printed), the rest
/// keep serving.
fn ecmp_and_a_node_cut_off(kind: RouterKind, bfd: bool) {
    let bgp = Bgp::start(kind, bfd, None, &config(bfd, None, ""));
    let took = bgp.wait_next_hops(PREFIX4, 3, Duration::from_secs(30));
    assert_eq!(bgp.router.next_hops(PREFIX4), every_node(), "one next hop per node");
    bgp.wait_next_hops(PREFIX6, 3, Duration::from_secs(10));
    eprintln!("{kind:?}: {PREFIX4} and {PREFIX6} over three next hops {took:?} after the last speaker started");
    // MetalLB's metrics, from FRR's state: the session is up, two prefixes announced.
    let s = &bgp.speakers[0];
    // (Read every 500 ms: the router may hold the routes a moment before the speaker knows.)
    s.wait_until("the session up, two prefixes announced", || {
        s.metric("metallb_bgp_session_up", "peer=\"198.51.100.1:179\"") == 1.0
            && s.metric("metallb_bgp_announced_prefixes_total", "peer=\"198.51.100.1:179\"") == 2.0
    });
    assert!(s.metric("metallb_bgp_updates_total", "vrf=\"default\"") >= 1.0);
    // The advertisement's community on the router.
    let shown = bgp.router.show_route(PREFIX4);
    assert!(shown.contains("64512:100") || shown.contains("(64512,100)"), "community not on the router:\n{shown}");

    if kind == RouterKind::Bird {
        // The client behind the router reaches the Service through every node (ECMP with
        // ports hashed): 30 fetches, more than one node.
        let (nodes, failed) = bgp.fetch_nodes(&format!("http://{VIP4}/"), 30);
        assert_eq!(failed, 0, "fetches through {VIP4} failed");
        assert!(nodes.len() >= 2, "30 fetches reached only {nodes:?}");
        let (nodes6, failed6) = bgp.fetch_nodes(&format!("http://[{VIP6}]/"), 10);
        assert_eq!(failed6, 0, "fetches through {VIP6} failed (reached {nodes6:?})");
    }

    // Node 0's cable is pulled: the router drops its next hop when the session dies (the
    // BFD detection time, 300 ms × 3, or the hold time, 3 s).
    bgp.lan.link(0, false);
    let gone = bgp.wait_next_hops(PREFIX4, 2, Duration::from_secs(15));
    eprintln!(
        "{kind:?}: node 0's next hop withdrawn {gone:?} after its link was cut ({})",
        if bfd { "BFD 300 ms x 3" } else { "hold time 3 s" }
    );
    assert!(!bgp.router.next_hops(PREFIX4).contains(&node_v4(0)));
    if kind == RouterKind::Bird {
        let (nodes, failed) = bgp.fetch_nodes(&format!("http://{VIP4}/"), 10);
        assert_eq!(failed, 0, "fetches failed once node 0's route was gone");
        assert!(!nodes.contains("node-0"), "{nodes:?}");
    }
    // The cable back: the session and the next hop return.
    bgp.lan.link(0, true);
    bgp.wait_next_hops(PREFIX4, 3, Duration::from_secs(30));
}

#[test]
fn bird_holds_one_next_hop_per_node_and_drops_a_node_cut_off_within_the_hold_time() {
    ecmp_and_a_node_cut_off(RouterKind::Bird, false);
}

#[test]
fn bird_with_bfd_drops_a_node_cut_off_within_the_detection_time() {
    ecmp_and_a_node_cut_off(RouterKind::Bird, true);
}

#[test]
fn gobgp_holds_one_path_per_node_and_drops_a_node_cut_off() {
    ecmp_and_a_node_cut_off(RouterKind::Gobgp, false);
}

/// Configuration changes go through FRR's reload: a new Service's prefix appears and a
/// removed one is withdrawn without the session being reset; a speaker restart leaves the
/// routes alone (FRR keeps them; the same configuration applies as no change).
#[test]
fn changes_never_reset_the_session_and_a_speaker_restart_keeps_the_routes() {
    let base = config(false, None, "");
    let mut bgp = Bgp::start(RouterKind::Bird, false, None, &base);
    bgp.wait_next_hops(PREFIX4, 3, Duration::from_secs(30));
    let established = |frr: &Frr| -> u64 {
        let json: serde_json::Value = serde_json::from_str(&frr.vtysh("show bgp neighbors json")).unwrap_or_default();
        json["198.51.100.1"]["connectionsEstablished"].as_u64().unwrap_or(0)
    };
    assert_eq!(established(&bgp.frrs[1]), 1);

    let second = "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: second\n  namespace: default\n  annotations: {metallb.io/loadBalancerIPs: '192.0.2.20'}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n";
    for s in &bgp.speakers {
        s.reload(&config(false, None, second));
    }
    bgp.wait_next_hops("192.0.2.20/32", 3, Duration::from_secs(15));
    for s in &bgp.speakers {
        s.reload(&base);
    }
    bgp.wait_next_hops("192.0.2.20/32", 0, Duration::from_secs(15));
    assert_eq!(bgp.router.next_hops(PREFIX4), every_node(), "the first Service kept its routes");
    assert_eq!(established(&bgp.frrs[1]), 1, "a reload reset the session");

    // Node 1's speaker is killed and started again: its next hop never leaves.
    bgp.speakers[1].signal("KILL");
    let _ = bgp.speakers[1].wait_exit();
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert_eq!(bgp.router.next_hops(PREFIX4), every_node(), "a route moved while the speaker was down");
        std::thread::sleep(Duration::from_millis(50));
    }
    bgp.speakers[1] = start_speaker(&bgp.lan, &bgp.frrs, 1, &base);
    let s = &bgp.speakers[1];
    s.wait_until("the session reported up", || s.metric("metallb_bgp_session_up", "") == 1.0);
    assert_eq!(bgp.router.next_hops(PREFIX4), every_node());
    assert_eq!(established(&bgp.frrs[1]), 1, "the restart reset the session");
}

/// The advertisement's aggregation lengths and a large community reach the router as
/// configured (MetalLB's e2etest/bgptests: `aggregationLength` and communities checked on
/// the external router).
#[test]
fn aggregation_and_a_large_community_appear_on_the_router() {
    let aggregated = config(false, None, "").replace(
        "  communities: ['64512:100']\n",
        "  aggregationLength: 24\n  aggregationLengthV6: 64\n  communities: ['large:64512:1:2']\n",
    );
    let bgp = Bgp::start(RouterKind::Bird, false, None, &aggregated);
    bgp.wait_next_hops("192.0.2.0/24", 3, Duration::from_secs(30));
    bgp.wait_next_hops("2001:db8:192::/64", 3, Duration::from_secs(10));
    assert!(bgp.router.next_hops(PREFIX4).is_empty(), "the /32 itself is not announced");
    let shown = bgp.router.show_route("192.0.2.0/24");
    assert!(shown.contains("BGP.large_community: (64512, 1, 2)"), "no large community on the router:\n{shown}");
    // The client reaches the Service through the aggregate.
    assert!(bgp.router.fetch(&format!("http://{VIP4}/")).is_some(), "no fetch through {VIP4}");
}

/// A BGPPeer with an IPv6 address: an IPv6 session (MP-BGP, IPv6 only), the Service's
/// IPv6 prefix over every node, its IPv4 one not at all (the session does not carry it).
#[test]
fn an_ipv6_session_carries_the_ipv6_prefix() {
    let v6 = config(false, None, "")
        .replace("  peerAddress: 198.51.100.1\n", "  peerAddress: '2001:db8:100::1'\n")
        .replace("  dualStackAddressFamily: true\n", "");
    let bgp = Bgp::start(RouterKind::Bird, false, None, &v6);
    bgp.wait_next_hops(PREFIX6, 3, Duration::from_secs(30));
    assert!(bgp.router.next_hops(PREFIX4).is_empty(), "an IPv4 prefix over an IPv6-only session");
    let s = &bgp.speakers[2];
    s.wait_until("the IPv6 session reported up", || {
        s.metric("metallb_bgp_session_up", "peer=\"2001:db8:100::1:179\"") == 1.0
    });
    let (nodes, failed) = bgp.fetch_nodes(&format!("http://[{VIP6}]/"), 10);
    assert_eq!(failed, 0, "fetches through {VIP6} failed (reached {nodes:?})");
}

/// With `enableGracefulRestart`, bgpd crashing and coming back (empty: the speaker gives
/// it its configuration again) leaves the node's next hop on the router throughout: the
/// router, a graceful-restart helper, keeps its routes until the session is back.
#[test]
fn graceful_restart_keeps_the_routes_while_bgpd_restarts() {
    let gr = config(false, None, "")
        .replace("  dualStackAddressFamily: true\n", "  dualStackAddressFamily: true\n  enableGracefulRestart: true\n");
    let bgp = Bgp::start(RouterKind::Bird, false, None, &gr);
    bgp.wait_next_hops(PREFIX4, 3, Duration::from_secs(30));
    let s = &bgp.speakers[1];
    s.wait_until("the session reported up", || s.metric("metallb_bgp_session_up", "") == 1.0);
    let crashed = Instant::now();
    bgp.frrs[1].crash_and_restart("bgpd");
    // Until the session is back (the speaker re-applies within its poll, 500 ms), the
    // route keeps all three next hops.
    let mut seen_down = false;
    while crashed.elapsed() < Duration::from_secs(20) {
        assert_eq!(bgp.router.next_hops(PREFIX4), every_node(), "a next hop left during the restart");
        let up = s
            .http("/metrics")
            .is_some_and(|m| m.contains("metallb_bgp_session_up{peer=\"198.51.100.1:179\",vrf=\"default\"} 1"));
        seen_down |= !up;
        if seen_down && up {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen_down, "the speaker never saw the session go down: was bgpd restarted?");
    eprintln!("bgpd back with its sessions {:?} after the crash", crashed.elapsed());
    assert_eq!(bgp.router.next_hops(PREFIX4), every_node());
}

/// A password the router does not share: no session, no route, and the speaker says so
/// (its metric); the right one, from a basic-auth Secret, brings the sessions up.
#[test]
fn a_password_mismatch_is_a_session_down() {
    let bgp = Bgp::start(RouterKind::Bird, false, Some("the-routers-secret"), &config(false, Some("not-the-same"), ""));
    let s = &bgp.speakers[0];
    // FRR reports the session (Active/Connect) without ever establishing it.
    s.wait_until("the session reported down", || {
        s.http("/metrics")
            .is_some_and(|m| m.contains("metallb_bgp_session_up{peer=\"198.51.100.1:179\",vrf=\"default\"} 0"))
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(bgp.router.next_hops(PREFIX4).is_empty(), "a route without a session");
    assert_eq!(s.metric("metallb_bgp_session_up", "peer=\"198.51.100.1:179\""), 0.0);
    // Down for ten reads (500 ms each here): /readyz names the peer.
    s.wait_until("/readyz naming the peer", || {
        s.http_body("/readyz").contains("waiting for BGP peer 198.51.100.1:179 (vrf default): session ")
    });

    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: router-password, namespace: metallb-system}\ntype: kubernetes.io/basic-auth\ndata: {password: dGhlLXJvdXRlcnMtc2VjcmV0}\n";
    let right = config(false, None, secret).replace(
        "  dualStackAddressFamily: true\n",
        "  dualStackAddressFamily: true\n  passwordSecret: {name: router-password, namespace: metallb-system}\n",
    );
    for s in &bgp.speakers {
        s.reload(&right);
    }
    bgp.wait_next_hops(PREFIX4, 3, Duration::from_secs(30));
    s.wait_until("the session reported up", || s.metric("metallb_bgp_session_up", "") == 1.0);
    s.wait_until("ready again", || s.http("/readyz").is_some_and(|b| b == "ready"));
}
