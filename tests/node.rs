//! The speaker on a node that looks like a real K3s or kubeadm node, not a clean veth: a
//! `cni0` bridge with pod veths, a vxlan `flannel.1`, `kube-ipvs0`, a NOARP tunnel, a
//! bridge whose port stands in for a bond slave, a macvlan, and a LAN behind an
//! MLD-snooping switch. Each test asserts where packet sockets are open (the speaker's
//! `/proc/PID/net/packet`) and where frames leave (who answers the kernel's own clients).
//!
//! This CI kernel has no bond, dummy or vlan link types: a bond's backup port is played
//! by a bridge port (both have a master, which is what the speaker looks at), and VLAN
//! sub-interfaces are covered by the unit test on frame metadata
//! (`dataplane::tests::a_frame_tagged_for_a_vlan_is_left_to_its_sub_interface`).
//! Root is required; the tests fail, never skip, without it.

use ferrolb_testkit::netns;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use netns::{CLIENT_MAC, Netns, SERVER_MAC, Speaker, arping_all, config, ndisc6, veth};

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";

/// Interface names with a packet socket open by process `pid`, and the protocols.
fn sockets_of(ns: &Netns, pid: u32) -> BTreeSet<(String, String)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/packet")).expect("/proc/PID/net/packet");
    let names: std::collections::BTreeMap<i32, String> = ns
        .ip(&["-o", "link"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let index = f.next()?.trim().parse().ok()?;
            let name = f.next()?.split('@').next()?.to_string();
            Some((index, name))
        })
        .collect();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let proto = match *f.get(3)? {
                "0806" => "arp",
                "86DD" | "86dd" => "ipv6",
                other => other,
            };
            let ifindex: i32 = f.get(4)?.parse().ok()?;
            Some((names.get(&ifindex).cloned().unwrap_or_else(|| ifindex.to_string()), proto.to_string()))
        })
        .collect()
}

/// A node namespace laid out like a K3s node with flannel, and the LAN it sits on.
struct Node {
    ns: Netns,
    lan: Netns,
    /// A second LAN segment reached through `br-lan`, whose port `eno2` plays a bond's
    /// backup port.
    lan2: Netns,
    pod: Netns,
    /// The far ends of kube-ipvs0 and wg0, kept so that they are deleted with the test.
    _peers: [Netns; 2],
}

const LAN2_MAC: &str = "02:c1:00:00:00:22";
const BRIDGE_MAC: &str = "02:fe:00:00:00:0b";

fn node() -> Node {
    netns::require_root();
    let ns = Netns::new("fn");
    let lan = Netns::new("fl");
    let lan2 = Netns::new("fl2");
    let pod = Netns::new("fp");
    // The uplink: eth0, with the node's addresses.
    let (up, lan_if) = veth(&ns, &lan);
    ns.ip(&["link", "set", &up, "name", "eth0"]);
    ns.ip(&["link", "set", "eth0", "address", SERVER_MAC, "up"]);
    ns.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    ns.ip(&["addr", "add", "2001:db8:100::2/64", "dev", "eth0", "nodad"]);
    lan.ip(&["link", "set", &lan_if, "name", "lan0"]);
    lan.ip(&["link", "set", "lan0", "address", CLIENT_MAC, "up"]);
    lan.ip(&["addr", "add", "198.51.100.1/24", "dev", "lan0"]);
    lan.ip(&["addr", "add", "2001:db8:100::1/64", "dev", "lan0", "nodad"]);
    // The CNI bridge with a pod's veth, as flannel's bridge plugin makes them.
    ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    ns.ip(&["link", "set", "cni0", "up"]);
    ns.ip(&["addr", "add", "203.0.113.1/24", "dev", "cni0"]);
    let (host_end, pod_end) = veth(&ns, &pod);
    ns.ip(&["link", "set", &host_end, "name", "veth1a2b3c4d"]);
    ns.ip(&["link", "set", "veth1a2b3c4d", "master", "cni0", "up"]);
    pod.ip(&["link", "set", &pod_end, "name", "eth0"]);
    pod.ip(&["link", "set", "eth0", "up"]);
    pod.ip(&["addr", "add", "203.0.113.7/24", "dev", "eth0"]);
    // flannel's vxlan, kube-proxy's IPVS device (a dummy on a real node), a NOARP tunnel.
    ns.ip(&["link", "add", "flannel.1", "type", "vxlan", "id", "1", "dev", "eth0", "dstport", "8472"]);
    ns.ip(&["link", "set", "flannel.1", "up"]);
    let ipvs = Netns::new("fx");
    let (k, _) = veth(&ns, &ipvs);
    ns.ip(&["link", "set", &k, "name", "kube-ipvs0"]);
    ns.ip(&["link", "set", "kube-ipvs0", "up"]);
    let tun = Netns::new("ft");
    let (t, _) = veth(&ns, &tun);
    ns.ip(&["link", "set", &t, "name", "wg0"]);
    ns.ip(&["link", "set", "wg0", "arp", "off", "up"]);
    // A bridge with a port towards a second segment: the bridge answers, never the port
    // (on an active-backup bond, the backup port answering moves the node's MAC).
    ns.ip(&["link", "add", "br-lan", "type", "bridge"]);
    ns.ip(&["link", "set", "br-lan", "address", BRIDGE_MAC, "up"]);
    let (port, lan2_if) = veth(&ns, &lan2);
    ns.ip(&["link", "set", &port, "name", "eno2"]);
    ns.ip(&["link", "set", "eno2", "master", "br-lan", "up"]);
    lan2.ip(&["link", "set", &lan2_if, "address", LAN2_MAC, "up"]);
    lan2.ip(&["addr", "add", "198.51.100.3/24", "dev", &lan2_if]);
    // A macvlan on the uplink: the same segment as eth0, so skipped (a second MAC would answer).
    ns.ip(&["link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge"]);
    ns.ip(&["link", "set", "mv0", "address", "02:fe:00:00:00:0c", "up"]);
    // kube-proxy in IPVS mode with strictARP: the kernel accepts the VIPs, never answers.
    ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
    ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
    ns.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"]);
    ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
    Node { ns, lan, lan2, pod, _peers: [ipvs, tun] }
}

fn interface_of(ns: &Netns) -> String {
    ns.ip(&["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
        .find(|n| n != "lo")
        .expect("an interface")
}

/// With no `interfaces` in the L2Advertisement (the common case), the speaker answers
/// on the uplink and the bridge, and on nothing MetalLB's speaker skips: no socket on
/// `cni0`, a pod veth, `flannel.1`, `kube-ipvs0`, the NOARP tunnel or the bridge port;
/// nor on the macvlan on the uplink (same segment: a second MAC for the address); IPv6
/// sockets only where an IPv6 address is announced.
#[test]
fn a_k3s_nodes_interfaces_are_chosen_as_metallb_chooses_them() {
    let n = node();
    let speaker = Speaker::start(&n.ns, &config(&[VIP4], &[]), &[]);
    let sockets = sockets_of(&n.ns, speaker.pid());
    let expected: BTreeSet<(String, String)> =
        ["br-lan", "eth0"].iter().map(|i| (i.to_string(), "arp".to_string())).collect();
    assert_eq!(sockets, expected, "packet sockets (no IPv6 address announced, so no IPv6 socket)");
    // Where the answers come from: the uplink for the LAN, the bridge (not its port) for
    // the second segment, exactly once each; nothing towards the pods.
    assert_eq!(arping_all(&n.lan, "lan0", VIP4, 3), [SERVER_MAC.to_string()].into());
    let lan2_if = interface_of(&n.lan2);
    assert_eq!(arping_all(&n.lan2, &lan2_if, VIP4, 3), [BRIDGE_MAC.to_string()].into());
    assert!(arping_all(&n.pod, "eth0", VIP4, 2).is_empty(), "answered towards the pods");
    // A pod starting (a new veth on cni0) re-applies nothing.
    let before = speaker.log_text().matches("configuration applied").count();
    let pod2 = Netns::new("fp");
    let (host_end, _) = veth(&n.ns, &pod2);
    n.ns.ip(&["link", "set", &host_end, "name", "veth9f8e7d6c"]);
    n.ns.ip(&["link", "set", "veth9f8e7d6c", "master", "cni0", "up"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(speaker.log_text().matches("configuration applied").count(), before, "a pod's veth re-applied");
    assert_eq!(sockets_of(&n.ns, speaker.pid()), expected);
}

/// Named interfaces win over the exclusion patterns (an operator who names `cni0` means
/// it), and a new interface is picked up from netlink within a moment, not a poll.
#[test]
fn named_interfaces_win_and_new_ones_come_from_netlink() {
    let n = node();
    // The harness polls every 200 ms, but with netlink events the poll never re-reads the
    // interfaces: only netlink can make a new one count.
    let speaker = Speaker::start(&n.ns, &config(&[VIP4, VIP6], &["cni0"]), &[]);
    let sockets = sockets_of(&n.ns, speaker.pid());
    let expected: BTreeSet<(String, String)> =
        [("cni0", "arp"), ("cni0", "ipv6")].iter().map(|(i, p)| (i.to_string(), p.to_string())).collect();
    assert_eq!(sockets, expected);
    let pod_mac = n.ns.ip(&["-o", "link", "show", "cni0"]);
    let cni_mac = pod_mac.split("link/ether ").nth(1).and_then(|s| s.split(' ').next()).unwrap().to_string();
    assert_eq!(arping_all(&n.pod, "eth0", VIP4, 2), [cni_mac].into());
    assert!(arping_all(&n.lan, "lan0", VIP4, 1).is_empty(), "eth0 is not named");
    // An interface appears.
    let config_all = config(&[VIP4], &[]);
    speaker.reload(&config_all);
    speaker.wait_until("eth0's socket", || sockets_of(&n.ns, speaker.pid()).contains(&("eth0".into(), "arp".into())));
    let extra = Netns::new("fe");
    let (e, extra_if) = veth(&n.ns, &extra);
    n.ns.ip(&["link", "set", &e, "name", "eth1", "address", "02:fe:00:00:00:0e", "up"]);
    extra.ip(&["link", "set", &extra_if, "up"]);
    speaker.wait_until("eth1's socket, from netlink", || {
        sockets_of(&n.ns, speaker.pid()).contains(&("eth1".into(), "arp".into()))
    });
}

/// Behind a bridge with MLD snooping and a querier that does not flood unregistered
/// multicast to the node's port (as managed switches do), Neighbor Solicitations for an
/// IPv6 VIP reach the node only because the speaker joined the solicited-node group
/// through the IPv6 stack: the kernel's MLD report registers it, `bridge mdb show` lists
/// it on the node's port, and ndisc6 is answered.
#[test]
fn behind_an_mld_snooping_switch_ipv6_vips_are_answered() {
    netns::require_root();
    let switch = Netns::new("fw");
    switch.ip(&["link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1"]);
    switch.ip(&["link", "set", "br0", "up"]);
    let node = Netns::new("fn");
    let client = Netns::new("fc");
    let (node_port, node_if) = veth(&switch, &node);
    let (client_port, client_if) = veth(&switch, &client);
    for p in [&node_port, &client_port] {
        switch.ip(&["link", "set", p, "master", "br0", "up"]);
    }
    must_ok(Command::new("ip").args([
        "netns",
        "exec",
        &switch.name,
        "bridge",
        "link",
        "set",
        "dev",
        &node_port,
        "mcast_flood",
        "off",
    ]));
    node.ip(&["link", "set", &node_if, "address", SERVER_MAC, "up"]);
    node.ip(&["addr", "add", "2001:db8:100::2/64", "dev", &node_if, "nodad"]);
    node.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
    client.ip(&["link", "set", &client_if, "address", CLIENT_MAC, "up"]);
    client.ip(&["addr", "add", "2001:db8:100::1/64", "dev", &client_if, "nodad"]);
    let speaker = Speaker::start(&node, &config(&[VIP6], &[]), &[]);
    let group = "ff02::1:ff00:10";
    speaker.wait_until("the group in the bridge's mdb", || {
        let mdb = switch_output(&switch, &["bridge", "mdb", "show"]);
        mdb.contains(group) && mdb.contains(&node_port)
    });
    assert_eq!(ndisc6(&client, &client_if, VIP6).as_deref(), Some(SERVER_MAC));
    // Released: the speaker leaves the group (the kernel sends the MLD done message).
    speaker.reload(&config(&[], &[]));
    speaker.wait_until("the group gone from the mdb", || {
        !switch_output(&switch, &["bridge", "mdb", "show"]).contains(group)
    });
}

/// Replies go through the qdisc, so `tcpdump` on the node shows them: the first thing
/// an operator debugging ARP looks at.
#[test]
fn replies_are_visible_to_tcpdump_on_the_node() {
    let n = node();
    let speaker = Speaker::start(&n.ns, &config(&[VIP4], &[]), &[]);
    let cap = std::env::temp_dir().join(format!("ferrolb-{}.txt", netns::unique("cap")));
    let mut dump = netns::KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &n.ns.name, "tcpdump", "-l", "-n", "-e", "-i", "eth0", "arp"])
            .stdout(std::fs::File::create(&cap).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump (CI installs it)"),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(arping_all(&n.lan, "lan0", VIP4, 2), [SERVER_MAC.to_string()].into());
    std::thread::sleep(Duration::from_millis(300));
    let _ = dump.0.kill();
    let _ = dump.0.wait();
    let text = std::fs::read_to_string(&cap).unwrap_or_default();
    let _ = std::fs::remove_file(&cap);
    assert!(
        text.lines().any(|l| l.contains("Reply") && l.contains(&format!("{VIP4} is-at {SERVER_MAC}"))),
        "tcpdump did not see the reply:\n{text}\nspeaker log:\n{}",
        speaker.log_text()
    );
}

fn switch_output(ns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip").args(["netns", "exec", &ns.name]).args(args).output().expect("run in namespace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn must_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}
