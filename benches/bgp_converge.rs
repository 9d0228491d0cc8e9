//! BGP convergence bench (root): three nodes, each a speaker driving its own FRR, peer
//! with BIRD 2 in a router namespace. 1,000 Services (one IPv6 address each, announced
//! over the IPv4 sessions) are added to every node's file at once, then removed; we time,
//! from the router's kernel table, until every prefix has its three next hops, and until
//! none is left. Then the memory of each node's speaker and FRR daemons with the 1,000
//! announced.
//!
//!     sudo cargo bench -p ferrolb-speaker --bench bgp_converge [-- services=N] [-- reps=N]
//!
//! Needs Debian's frr, frr-pythontools and bird2. Traffic stays in namespaces made here, on
//! documentation addresses.

use std::time::{Duration, Instant};

use ferrolb_testkit::netns::{ClusterLan, Frr, NODE_ASN, ROUTER_ASN, Router, RouterKind, Speaker};

fn config(services: usize) -> String {
    let mut c = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: bgp, namespace: metallb-system}}\nspec:\n  addresses: ['2001:db8:1::/112']\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\nspec:\n  myASN: {NODE_ASN}\n  peerASN: {ROUTER_ASN}\n  peerAddress: 198.51.100.1\n  holdTime: 3s\n  keepaliveTime: 1s\n  connectTime: 1s\n  dualStackAddressFamily: true\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: bgp, namespace: metallb-system}}\n"
    );
    for i in 0..services {
        c += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: default\n  annotations: {{metallb.io/loadBalancerIPs: '2001:db8:1::{:x}'}}\nspec:\n  type: LoadBalancer\n  ipFamilies: [IPv6]\n  ports: [{{port: 80}}]\n",
            i + 1
        );
    }
    c
}

/// Waits until the router's table satisfies `done` (given the routes with three next hops
/// and all routes); returns the time taken.
fn converge(router: &Router, what: &str, done: impl Fn(usize, usize) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let routes = router.kernel_routes(true);
        let full = routes.values().filter(|h| **h == 3).count();
        if done(full, routes.len()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{what}: {full} of {} routes complete after 300 s",
            routes.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let arg = |key: &str, default: usize| {
        std::env::args()
            .find_map(|a| a.strip_prefix(&format!("{key}=")).and_then(|v| v.parse().ok()))
            .unwrap_or(default)
    };
    let (services, reps) = (arg("services", 1000), arg("reps", 3));
    let lan = ClusterLan::new(3);
    let router = Router::start(&lan, RouterKind::Bird, false, None);
    let frrs: Vec<Frr> = lan.nodes.iter().map(Frr::start).collect();
    let empty = config(0);
    let speakers: Vec<Speaker> = (0..3)
        .map(|i| {
            let name = format!("node-{i}");
            let mut args = vec!["--node-name".to_string(), name, "--log-level".into(), "warn".into()];
            args.extend(frrs[i].speaker_args());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            Speaker::start(&lan.nodes[i], &empty, &refs)
        })
        .collect();
    for s in &speakers {
        s.wait_until("the session up", || s.metric("metallb_bgp_session_up", "") == 1.0);
    }
    let full = config(services);
    println!("{services} Services, three nodes, BIRD 2 (kernel table, ECMP)");
    for rep in 1..=reps {
        for s in &speakers {
            s.reload(&full);
        }
        let up = converge(&router, "announce", |complete, _| complete == services);
        if rep == reps {
            println!("memory per node with {services} announced (VmRSS, KiB):");
            for (i, (s, f)) in speakers.iter().zip(&frrs).enumerate() {
                let daemons: Vec<(String, u64)> = ["zebra", "bgpd", "bfdd"]
                    .iter()
                    .map(|d| {
                        let pid = std::fs::read_to_string(f.dir.0.join(format!("{d}.pid"))).unwrap_or_default();
                        (d.to_string(), rss_kib(&pid))
                    })
                    .collect();
                let speaker = rss_kib(&s.pid().to_string());
                let frr: u64 = daemons.iter().map(|(_, k)| k).sum();
                println!("  node-{i}: speaker {speaker}, FRR {frr} ({daemons:?}), total {}", speaker + frr);
            }
        }
        for s in &speakers {
            s.reload(&empty);
        }
        let down = converge(&router, "withdraw", |_, all| all == 0);
        println!("rep {rep}: announced (all {services} with 3 next hops) in {up:.2?}, withdrawn in {down:.2?}");
    }
}
