//! Packet-level tests of the standalone speaker: the kernel's own ARP and NDP clients
//! (`arping`, `ndisc6`, `ping`, the neighbor table) in network namespaces made here.
//! They need root and fail, rather than skip, without it.

use ferrolb_testkit::netns;

use std::time::Duration;

use ferrolb_wire::{ArpOp, ArpRepr, EtherType, MacAddr, NeighborSolicit, ipv6, ndp, solicited_node};
use netns::{CLIENT_MAC, Lan, Netns, SERVER_MAC, Speaker, config, inject, veth};

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";

#[test]
fn arping_ping_and_ndisc6_reach_vips_only_through_the_speaker() {
    let lan = Lan::new();
    for ip in [VIP4, VIP6, "198.51.100.12", "2001:db8:100::12"] {
        lan.accept_locally(ip);
    }
    // Control: the node's kernel accepts traffic for the VIPs but does not answer for them.
    assert_eq!(lan.arping(VIP4, 1), None, "the kernel answered ARP itself");
    assert_eq!(lan.ndisc6(VIP6), None, "the kernel answered NDP itself");

    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    assert_eq!(lan.arping(VIP4, 2).as_deref(), Some(SERVER_MAC));
    assert!(lan.ping(VIP4), "ping {VIP4}");
    assert_eq!(lan.client.neighbor(VIP4, &lan.client_if).map(|n| n.0).as_deref(), Some(SERVER_MAC));
    assert_eq!(lan.ndisc6(VIP6).as_deref(), Some(SERVER_MAC));
    assert!(lan.ping(VIP6), "ping -6 {VIP6}");
    assert_eq!(lan.client.neighbor(VIP6, &lan.client_if).map(|n| n.0).as_deref(), Some(SERVER_MAC));

    // In the pool and accepted by the node, but not a VIP: never answered.
    assert_eq!(lan.arping("198.51.100.12", 1), None);
    assert_eq!(lan.ndisc6("2001:db8:100::12"), None);

    let ip4 = format!("ip=\"{VIP4}\"");
    assert!(speaker.metric("metallb_layer2_requests_received", &ip4) >= 2.0);
    assert!(speaker.metric("metallb_layer2_responses_sent", &ip4) >= 2.0);
    assert!(speaker.metric("metallb_layer2_responses_sent", &format!("ip=\"{VIP6}\"")) >= 1.0);
    assert_eq!(
        speaker.metric(
            "metallb_speaker_announced",
            &format!("{ip4},node=\"node-a\",protocol=\"layer2\",service=\"default/svc0\"")
        ),
        1.0
    );
}

#[test]
fn stale_neighbor_entry_is_confirmed_by_unicast_solicitation() {
    let lan = Lan::new();
    lan.accept_locally(VIP6);
    let dev = &lan.client_if;
    lan.client.sysctl(&format!("net.ipv6.neigh.{dev}.delay_first_probe_time"), "1");
    let speaker = Speaker::start(&lan.server, &config(&[VIP6], &[]), &[]);
    assert_eq!(lan.ndisc6(VIP6).as_deref(), Some(SERVER_MAC));
    lan.client.ip(&["-6", "neigh", "replace", VIP6, "dev", dev, "lladdr", SERVER_MAC, "nud", "stale"]);
    let before = speaker.metric("metallb_layer2_requests_received", &format!("ip=\"{VIP6}\""));
    // UDP traffic (unlike ping, which confirms neighbors itself) moves STALE to DELAY
    // and then PROBE: the kernel sends unicast solicitations, and only a solicited
    // advertisement makes the entry REACHABLE again. Unanswered, it would go FAILED.
    let send = format!("echo probe > /dev/udp/{VIP6}/9");
    assert!(lan.client.exec(&["bash", "-c", &send]).status.success());
    speaker.wait_until("the entry to become REACHABLE", || {
        let state = lan.client.neighbor(VIP6, dev).map(|n| n.1);
        assert_ne!(state.as_deref(), Some("FAILED"), "unicast NUD went unanswered");
        state.as_deref() == Some("REACHABLE")
    });
    assert!(speaker.metric("metallb_layer2_requests_received", &format!("ip=\"{VIP6}\"")) > before);
}

#[test]
fn requests_on_an_unselected_interface_are_not_answered() {
    let lan = Lan::new();
    let other = Netns::new("fo");
    let (server_if2, other_if) = veth(&lan.server, &other);
    lan.server.ip(&["link", "set", &server_if2, "address", "02:fe:00:00:00:02", "up"]);
    lan.server.ip(&["addr", "add", "203.0.113.2/24", "dev", &server_if2]);
    other.ip(&["link", "set", &other_if, "up"]);
    other.ip(&["addr", "add", "203.0.113.1/24", "dev", &other_if]);
    other.ip(&["addr", "add", "2001:db8:200::1/64", "dev", &other_if, "nodad"]);
    let _speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[&lan.server_if]), &[]);

    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    let out = other.exec(&["arping", "-c", "2", "-w", "2", "-I", &other_if, VIP4]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("bytes from"), "answered on an unselected interface");
    let out = other.exec(&["ndisc6", "-1", "-r", "2", "-w", "500", VIP6, &other_if]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Target link-layer"),
        "NDP answered on an unselected interface"
    );
}

#[test]
fn claiming_a_vip_sends_gratuitous_arp_and_unsolicited_na() {
    let lan = Lan::new();
    let dev = &lan.client_if;
    // Let the client's kernel learn from announcements alone: no request is ever sent.
    lan.client.sysctl(&format!("net.ipv4.conf.{dev}.arp_accept"), "1");
    // Untracked advertisements create entries only on routers: the client plays the
    // LAN's router, the neighbor that matters most after a takeover.
    lan.client.sysctl(&format!("net.ipv6.conf.{dev}.forwarding"), "1");
    lan.client.sysctl(&format!("net.ipv6.conf.{dev}.accept_untracked_na"), "1");
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &["--gratuitous-count", "3"]);
    speaker.wait_until("the client to learn both VIPs from announcements", || {
        lan.client.neighbor(VIP4, dev).is_some_and(|n| n.0 == SERVER_MAC)
            && lan.client.neighbor(VIP6, dev).is_some_and(|n| n.0 == SERVER_MAC)
    });
    let sent = |ip: &str| speaker.metric("metallb_layer2_gratuitous_sent", &format!("ip=\"{ip}\""));
    // Three rounds: an ARP request and an ARP reply each for IPv4, one NA for IPv6.
    speaker.wait_until("three rounds", || sent(VIP4) == 6.0 && sent(VIP6) == 3.0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((sent(VIP4), sent(VIP6)), (6.0, 3.0), "the burst did not stop");
    assert_eq!(speaker.metric("metallb_layer2_requests_received", &format!("ip=\"{VIP4}\"")), 0.0);
}

#[test]
fn reload_claims_and_releases_and_a_bad_config_changes_nothing() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    let groups = || String::from_utf8_lossy(&lan.server.exec(&["cat", "/proc/net/dev_mcast"]).stdout).into_owned();
    assert!(groups().contains("3333ff000010"), "solicited-node group of {VIP6} not joined:\n{}", groups());

    speaker.reload(&config(&["198.51.100.13", "2001:db8:100::13"], &[]));
    let reloads = |result: &str| speaker.metric("ferrolb_config_reloads_total", &format!("result=\"{result}\""));
    speaker.wait_until("the reload", || reloads("success") == 2.0);
    assert_eq!(lan.arping(VIP4, 1), None, "a released VIP is still answered");
    assert_eq!(lan.ndisc6(VIP6), None, "a released VIP is still answered");
    assert_eq!(lan.arping("198.51.100.13", 1).as_deref(), Some(SERVER_MAC));
    assert_eq!(lan.ndisc6("2001:db8:100::13").as_deref(), Some(SERVER_MAC));
    let g = groups();
    assert!(g.contains("3333ff000013") && !g.contains("3333ff000010"), "multicast groups not updated:\n{g}");

    // An invalid file, picked up without SIGHUP: rejected, and the last good one serves on.
    let bad = config(&["198.51.100.13"], &[]).replace("198.51.100.10-198.51.100.250", "198.51.100.300-198.51.100.310");
    std::fs::write(&speaker.config, bad).unwrap();
    speaker.wait_until("the rejected reload", || reloads("failure") == 1.0);
    assert_eq!(speaker.metric("ferrolb_config_last_reload_successful", ""), 0.0);
    assert_eq!(lan.arping("198.51.100.13", 1).as_deref(), Some(SERVER_MAC));
    let log = speaker.log_text();
    assert!(
        log.contains("spec.addresses[0]") && log.contains("IPAddressPool metallb-system/lan"),
        "the error does not name the object and field:\n{log}"
    );
}

fn arp_frame(target: &str, mutate: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    let client: MacAddr = CLIENT_MAC.parse().unwrap();
    ArpRepr {
        op: ArpOp::Request,
        sender_mac: client,
        sender_ip: "198.51.100.1".parse().unwrap(),
        target_mac: MacAddr::ZERO,
        target_ip: target.parse().unwrap(),
    }
    .emit_frame(&mut f, MacAddr::BROADCAST, client);
    mutate(&mut f);
    f
}

fn ns_frame(target: &str, mutate: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = vec![0u8; ndp::FRAME_LEN];
    let target = target.parse().unwrap();
    let dst = solicited_node(target);
    NeighborSolicit { src: "2001:db8:100::1".parse().unwrap(), dst, target, source_ll: None }.emit_frame(
        &mut f,
        MacAddr::ipv6_multicast(dst),
        CLIENT_MAC.parse().unwrap(),
    );
    mutate(&mut f);
    f
}

/// Recomputes the ICMPv6 checksum after a mutation, so that only the intended field is wrong.
fn fix_checksum(f: &mut [u8]) {
    f[56..58].copy_from_slice(&[0, 0]);
    let p = ipv6::Ipv6Packet::parse(&f[14..]).unwrap();
    let (src, dst) = (p.src(), p.dst());
    let sum = ipv6::icmpv6_checksum(src, dst, &f[54..]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn malformed_flood_is_dropped_counted_and_does_not_stall_the_speaker() {
    const N: usize = 300;
    let lan = Lan::new();
    let mut speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("arp_hardware", arp_frame(VIP4, |f| f[15] = 6)), // IEEE 802 hardware type
        ("arp_hardware", arp_frame(VIP4, |f| f[18] = 8)), // hardware length 8
        ("arp_protocol", arp_frame(VIP4, |f| f[19] = 16)), // protocol length 16
        ("checksum", ns_frame(VIP6, |f| f[57] ^= 0x5a)),
        (
            "hop_limit",
            ns_frame(VIP6, |f| {
                f[21] = 64;
            }),
        ),
        (
            "ndp_option",
            ns_frame(VIP6, |f| {
                f[79] = 0;
                fix_checksum(f);
            }),
        ),
        ("ipv6_length", ns_frame(VIP6, |f| f.truncate(80))),
        (
            "vlan",
            arp_frame(VIP4, |f| {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            }),
        ),
    ];
    let mut frames = Vec::new();
    for _ in 0..N {
        frames.extend(kinds.iter().map(|(_, f)| f.clone()));
    }
    // A sustained flood of about 30,000 frames/s: far more than any LAN sends, and well
    // within what one core answers (see the throughput bench for the limits).
    inject(&lan.client, &lan.client_if, frames, Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(speaker.alive(), "the speaker died:\n{}", speaker.log_text());
    let dropped = |reason: &str| speaker.metric("ferrolb_frames_dropped_total", &format!("reason=\"{reason}\""));
    let socket_drops = speaker.metric("ferrolb_socket_drops_total", "protocol=\"arp\"")
        + speaker.metric("ferrolb_socket_drops_total", "protocol=\"ndp\"");
    assert_eq!(socket_drops, 0.0, "the kernel had to drop frames: the speaker stalled");
    assert_eq!(dropped("arp_hardware"), (2 * N) as f64);
    for reason in ["arp_protocol", "checksum", "hop_limit", "ndp_option", "ipv6_length"] {
        assert_eq!(dropped(reason), N as f64, "{reason}");
    }
    // The kernel strips a VLAN tag it has no VLAN device for and marks the frame as for
    // another host; a tag left in the frame is caught by the parser instead.
    assert_eq!(dropped("other_host") + dropped("vlan_tagged"), N as f64, "VLAN-tagged");
    assert_eq!(
        speaker.metric("metallb_layer2_responses_sent", &format!("ip=\"{VIP4}\"")),
        0.0,
        "answered a malformed frame"
    );
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    assert_eq!(lan.ndisc6(VIP6).as_deref(), Some(SERVER_MAC));
}

/// Issue 11's odd and hostile frames, from the wire into the real speaker: what the
/// kernel would answer is answered (an ARP request with more trailing bytes than the
/// receive ring's slot holds), what it would not is not (a truncated request, a
/// Neighbor Solicitation sent to another solicited-node group) and spoofed senders (our
/// own MAC, broadcast, multicast, zero, a group Ethernet source) are dropped and counted,
/// never answered.
#[test]
fn odd_and_hostile_frames_are_answered_as_the_kernel_would() {
    const N: usize = 50;
    let lan = Lan::new();
    let mut speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    let sender = |mac: &str| {
        let mac: MacAddr = mac.parse().unwrap();
        arp_frame(VIP4, move |f| f[22..28].copy_from_slice(&mac.0))
    };
    let spoofed = [
        sender(SERVER_MAC),
        sender("ff:ff:ff:ff:ff:ff"),
        sender("01:00:5e:00:00:01"),
        sender("00:00:00:00:00:00"),
        arp_frame(VIP4, |f| f[6..12].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1])),
    ];
    let other_group = ns_frame(VIP6, |f| {
        f[14 + 24..14 + 40].copy_from_slice(&solicited_node("2001:db8:100::99".parse().unwrap()).octets());
        f[..6].copy_from_slice(&MacAddr::ipv6_multicast(solicited_node("2001:db8:100::99".parse().unwrap())).0);
        fix_checksum(f);
    });
    let truncated = arp_frame(VIP4, |f| f.truncate(34));
    let long = arp_frame(VIP4, |f| f.extend(std::iter::repeat_n(0xa5, 1000)));
    let mut frames = Vec::new();
    for _ in 0..N {
        frames.extend(spoofed.iter().cloned());
        frames.extend([other_group.clone(), truncated.clone(), long.clone()]);
    }
    inject(&lan.client, &lan.client_if, frames, Duration::from_millis(2));
    let dropped = |reason: &str| speaker.metric("ferrolb_frames_dropped_total", &format!("reason=\"{reason}\""));
    // Sent by now; the speaker judges each within microseconds.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(dropped("bad_sender"), (spoofed.len() * N) as f64, "spoofed senders dropped and counted");
    assert_eq!(dropped("ndp_destination"), N as f64, "solicitations to another group dropped and counted");
    assert_eq!(
        speaker.metric("metallb_layer2_responses_sent", &format!("ip=\"{VIP4}\"")),
        N as f64,
        "only the long request is answered, once each"
    );
    assert_eq!(speaker.metric("metallb_layer2_responses_sent", &format!("ip=\"{VIP6}\"")), 0.0);
    assert!(speaker.alive());
}

#[test]
fn unrelated_traffic_never_reaches_the_speakers_sockets() {
    const N: usize = 2000;
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    // Let the first statistics tick pass, then take a baseline.
    std::thread::sleep(Duration::from_millis(1200));
    let delivered = || {
        speaker.metric("ferrolb_socket_frames_total", "protocol=\"arp\"")
            + speaker.metric("ferrolb_socket_frames_total", "protocol=\"ndp\"")
    };
    let baseline = delivered();
    let mut frames = Vec::new();
    for i in 0..N {
        let other4 = format!("198.51.100.{}", 20 + i % 200);
        frames.push(arp_frame(&other4, |_| {}));
        frames.push(arp_frame(VIP4, |f| f[21] = 2)); // an ARP reply
        frames.push(ns_frame(&format!("2001:db8:100::{:x}", 0x20 + i % 200), |_| {}));
        frames.push(ns_frame(VIP6, |f| {
            f[54] = 128;
            fix_checksum(f);
        })); // echo request
        frames.push(ns_frame(VIP6, |f| {
            f[20] = 17;
        })); // UDP
        frames.push(arp_frame(VIP4, |f| f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes()))); // IPv4
    }
    inject(&lan.client, &lan.client_if, frames, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(delivered() - baseline, 0.0, "unrelated frames reached the speaker's sockets");
    assert_eq!(speaker.metric("ferrolb_filter_misses_total", ""), 0.0);
    // The filter is not simply closed: a real request still gets through.
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    speaker.wait_until("the request to be counted", || delivered() - baseline >= 1.0);
}

#[test]
fn a_service_asking_for_no_address_is_allocated_one_and_announced() {
    let lan = Lan::new();
    let auto = "---\napiVersion: v1\nkind: Service\nmetadata: {name: auto, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 443}]\n";
    let speaker = Speaker::start(&lan.server, &(config(&[], &[]) + auto), &[]);
    // The pool's first address, as `ferrolb-controller plan` would print for this file.
    assert_eq!(lan.arping(VIP4, 2).as_deref(), Some(SERVER_MAC));
    assert_eq!(
        speaker.metric(
            "metallb_speaker_announced",
            &format!("ip=\"{VIP4}\",node=\"node-a\",protocol=\"layer2\",service=\"default/auto\"")
        ),
        1.0
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4], &[]), &["--log-format", "json", "--log-level", "info"]);
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    let log = speaker.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "expected log lines:\n{log}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    assert!(log.contains("\"message\":\"announcing\"") && log.contains(VIP4), "{log}");
}

#[test]
fn another_host_claiming_a_vip_is_counted_as_a_conflict() {
    let lan = Lan::new();
    lan.accept_locally(VIP4);
    lan.accept_locally(VIP6);
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    let conflicts = |ip: &str| speaker.metric("ferrolb_conflicts_total", &format!("ip=\"{ip}\""));
    assert_eq!(conflicts(VIP4), 0.0);
    // A rogue device answering a client's request for the VIP, and one announcing it:
    // ARP replies with the VIP as sender, from the kernel's arping.
    for target in ["198.51.100.1", VIP4] {
        let out = lan.client.exec(&["arping", "-c", "1", "-w", "1", "-P", "-S", VIP4, "-I", &lan.client_if, target]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("ARPING"), "arping -P ran");
    }
    speaker.wait_until("both ARP claims counted", || conflicts(VIP4) == 2.0);
    // An unsolicited Neighbor Advertisement of the IPv6 VIP by another MAC.
    let mut na = vec![0u8; ndp::FRAME_LEN];
    let client: MacAddr = CLIENT_MAC.parse().unwrap();
    let len = ferrolb_wire::NeighborAdvert {
        src: VIP6.parse().unwrap(),
        dst: "ff02::1".parse().unwrap(),
        router: false,
        solicited: false,
        override_: true,
        target: VIP6.parse().unwrap(),
        target_ll: Some(client),
    }
    .emit_frame(&mut na, MacAddr([0x33, 0x33, 0, 0, 0, 1]), client);
    na.truncate(len);
    inject(&lan.client, &lan.client_if, vec![na], Duration::ZERO);
    speaker.wait_until("the NA claim counted", || conflicts(VIP6) == 1.0);
    assert!(speaker.log_text().contains("another host announces an address we own"));
    // The speaker still answers for what it owns.
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
}
