//! The rendered configuration says what MetalLB's templates say (internal/bgp/frr/
//! templates/ at MetalLB 7938d3f89), and FRR's own parser (`vtysh --dryrun`, Debian's
//! frr) accepts it.

use std::collections::BTreeMap;

use ferrolb_model::config::bgp::{Endpoints, peers_for_node, routes};
use ferrolb_model::config::{NodeInfo, ServiceAddresses, load};

use super::*;

const CONFIG: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24, '2001:db8:100::/120']}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 100, transmitInterval: 100, echoMode: true}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 192.0.2.1, holdTime: 9s, bfdProfile: fast, passwordSecret: {name: tor-auth}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor6, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: '2001:db8::1', connectTime: 5s}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: spine, namespace: metallb-system}
spec: {myASN: 64512, dynamicASN: internal, interface: eth1, vrf: red}
---
apiVersion: v1
kind: Secret
metadata: {name: tor-auth, namespace: metallb-system}
type: kubernetes.io/basic-auth
stringData: {password: s3cret}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: all, namespace: metallb-system}
spec: {localPref: 150, communities: ['65535:65282', 'large:64512:1:2']}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: tor-only, namespace: metallb-system}
spec: {aggregationLength: 24, aggregationLengthV6: 124, peers: [tor]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
";

fn rendered() -> String {
    let config = load("bgp.yaml", CONFIG).unwrap().config;
    let assigned = [ServiceAddresses {
        service: "default/web".into(),
        pool: "lan".into(),
        addresses: vec!["198.51.100.10".parse().unwrap(), "2001:db8:100::10".parse().unwrap()],
    }];
    let node = NodeInfo::new("n1");
    let routes = routes(&config, &assigned, &node, |_: &str| Endpoints { any_ready: true, ready_here: true });
    let peers = peers_for_node(&config.bgp, &node);
    let secrets: BTreeMap<String, String> = [("tor-auth".to_string(), "s3cret".to_string())].into();
    render(&FrrInput {
        hostname: "n1",
        router_id: Some("192.0.2.10".parse().unwrap()),
        peers: &peers,
        routes: &routes,
        bfd_profiles: &config.bgp.bfd_profiles,
        secrets: &secrets,
    })
}

#[test]
fn sessions_prefixes_and_attributes_as_metallb_renders_them() {
    let text = rendered();
    for line in [
        "router bgp 64512\n",
        "router bgp 64512 vrf red\n",
        "  bgp router-id 192.0.2.10\n",
        // neighborsession.tmpl: remote-as, timers as keepalive then hold (hold 9s: keepalive 3s).
        "  neighbor 192.0.2.1 remote-as 64513\n",
        "  neighbor 192.0.2.1 timers 3 9\n",
        "  neighbor 192.0.2.1 password s3cret\n",
        "  neighbor 192.0.2.1 bfd profile fast\n",
        "  neighbor 2001:db8::1 timers connect 5\n",
        // Single-hop eBGP over IPv6: mustDisableConnectedCheck.
        "  neighbor 2001:db8::1 disable-connected-check\n",
        "  neighbor eth1 interface remote-as internal\n",
        // Each prefix once as a network; the /24 aggregate only to tor (peers: [tor]).
        "    network 198.51.100.0/24\n",
        "    network 198.51.100.10/32\n",
        "    network 2001:db8:100::10/128\n",
        // tor is given every IPv4 prefix its router originates: its last entry lets all
        // out, without a list; LOCAL_PREF is for the /32 only, so that one has a list.
        "route-map 192.0.2.1-out permit 4\n!\n",
        "ip prefix-list 192.0.2.1-150-ipv4-localpref-prefixes seq 1 permit 198.51.100.10/32\n",
        // tor6 is not given the /124 its router originates for tor: a list.
        "ipv6 prefix-list 2001:db8::1-pl-ipv6 seq 1 permit 2001:db8:100::10/128\n",
        "ip prefix-list 2001:db8::1-pl-ipv4 seq 1 deny any\n",
        "  set local-preference 150\n",
        "  set community 65535:65282 additive\n",
        "  set large-community 64512:1:2 additive\n",
        "route-map 192.0.2.1-in deny 20\n",
        "  profile fast\n    receive-interval 100\n    transmit-interval 100\n    detect-multiplier 3\n    echo-mode\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The v6-only session is not given the IPv4 family, nor the aggregate meant for tor.
    assert!(!text.contains("2001:db8::1-pl-ipv4 seq 1 permit"), "{text}");
    assert!(!text.contains("192.0.2.1-pl-ipv4"), "a complete neighbor has no per-prefix list:\n{text}");
    // The spine (its own router in VRF red) gets all, every attribute on all: no lists.
    assert!(text.contains("route-map eth1-red-out permit 3\n  set local-preference 150\n  on-match next\n"), "{text}");
    assert!(!text.contains("eth1-red-150"), "{text}");
    assert_eq!(text, rendered(), "the same input renders the same text");
}

/// FRR's own parser, not ours: `vtysh --dryrun` reads the file with every daemon's
/// command tree. Debian's `frr`; in CI its absence fails the test.
#[test]
fn frr_accepts_the_rendered_configuration() {
    let Some(vtysh) = ["/usr/bin/vtysh", "/bin/vtysh"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "vtysh (Debian's frr) is missing: .ci/run installs it");
        eprintln!("\n!!!!!!!! SKIPPED: no vtysh (apt-get install frr) !!!!!!!!\n");
        return;
    };
    let path = std::env::temp_dir().join(format!("ferrolb-frr-{}.conf", std::process::id()));
    std::fs::write(&path, rendered()).unwrap();
    let out = std::process::Command::new(vtysh).arg("--dryrun").arg("--inputfile").arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "FRR refuses the configuration:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it would refuse a broken one: the check can fail.
    let broken = std::env::temp_dir().join(format!("ferrolb-frr-broken-{}.conf", std::process::id()));
    std::fs::write(&broken, rendered().replace("remote-as", "remote-ass")).unwrap();
    let out = std::process::Command::new(vtysh).arg("--dryrun").arg("--inputfile").arg(&broken).output().unwrap();
    let _ = std::fs::remove_file(&broken);
    assert!(!out.status.success(), "vtysh --dryrun accepted a broken file");
}

/// A peer whose password Secret is not known is left out, not opened without it.
#[test]
fn a_peer_without_its_secret_is_left_out() {
    let config = load("bgp.yaml", CONFIG).unwrap().config;
    let node = NodeInfo::new("n1");
    let peers = peers_for_node(&config.bgp, &node);
    let text = render(&FrrInput {
        hostname: "n1",
        router_id: Some("2001:db8::10".parse().unwrap()),
        peers: &peers,
        routes: &[],
        bfd_profiles: &config.bgp.bfd_profiles,
        secrets: &BTreeMap::new(),
    });
    assert!(!text.contains("192.0.2.1"), "{text}");
    assert!(text.contains("neighbor 2001:db8::1 remote-as 64513"), "{text}");
    assert!(!text.contains("router-id"), "an IPv6 node address is no router ID:\n{text}");
}

/// Withdrawn Services' `network` lines go as one file of `no network` commands in their
/// context; nothing else (sessions, lists) is touched, nothing still wanted is removed.
#[test]
fn withdrawn_networks_in_their_context() {
    let old = rendered();
    let new = old.replace("    network 198.51.100.10/32\n", "").replace("    network 2001:db8:100::10/128\n", "");
    assert_eq!(
        withdrawn_networks(&old, &new),
        "router bgp 64512\n address-family ipv4 unicast\n  no network 198.51.100.10/32\n exit-address-family\nexit\nrouter bgp 64512\n address-family ipv6 unicast\n  no network 2001:db8:100::10/128\n exit-address-family\nexit\nrouter bgp 64512 vrf red\n address-family ipv4 unicast\n  no network 198.51.100.10/32\n exit-address-family\nexit\nrouter bgp 64512 vrf red\n address-family ipv6 unicast\n  no network 2001:db8:100::10/128\n exit-address-family\nexit\n"
    );
    assert_eq!(withdrawn_networks(&old, &old), "");
    assert_eq!(withdrawn_networks("", &old), "", "nothing applied before: nothing to withdraw");
}
