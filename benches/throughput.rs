//! Netns throughput bench (root): floods ARP requests and Neighbor Solicitations at a VIP
//! and counts the replies, side by side in the same run for FerroLB and for the Linux
//! kernel answering for the same address assigned to its interface. Also the speaker's
//! memory with 10k VIPs.
//!
//!     sudo cargo bench -p ferrolb-speaker --bench throughput [-- flood|memory]
//!
//! Traffic stays in namespaces made here, on documentation addresses.

use ferrolb_testkit::netns;

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_speaker::sys::{BpfInsn, PacketSocket};
use ferrolb_wire::{ArpOp, ArpRepr, EtherType, MacAddr, NeighborSolicit, ndp, solicited_node};
use netns::{CLIENT_MAC, Lan, Netns, Speaker, config, enter, process_cpu};

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";
const RATES: [u64; 3] = [50_000, 100_000, 200_000];
const RATE_RUN: Duration = Duration::from_secs(2);
const MAX_RUN: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Arp,
    Ndp,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// The request the flooder sends, and a filter for the client's socket passing replies.
fn request(proto: Proto) -> (Vec<u8>, u16, Vec<BpfInsn>) {
    let client: MacAddr = CLIENT_MAC.parse().unwrap();
    match proto {
        Proto::Arp => {
            let mut f = vec![0u8; 42];
            ArpRepr {
                op: ArpOp::Request,
                sender_mac: client,
                sender_ip: netns::CLIENT_V4.parse().unwrap(),
                target_mac: MacAddr::ZERO,
                target_ip: VIP4.parse().unwrap(),
            }
            .emit_frame(&mut f, MacAddr::BROADCAST, client);
            // ARP operation == reply
            let filter = vec![insn(0x28, 0, 0, 20), insn(0x15, 0, 1, 2), insn(0x06, 0, 0, 2048), insn(0x06, 0, 0, 0)];
            (f, EtherType::ARP, filter)
        }
        Proto::Ndp => {
            let mut f = vec![0u8; ndp::FRAME_LEN];
            let target: Ipv6Addr = VIP6.parse().unwrap();
            let dst = solicited_node(target);
            NeighborSolicit { src: netns::CLIENT_V6.parse().unwrap(), dst, target, source_ll: Some(client) }
                .emit_frame(&mut f, MacAddr::ipv6_multicast(dst), client);
            // ICMPv6 Neighbor Advertisement
            let filter = vec![
                insn(0x30, 0, 0, 20),
                insn(0x15, 0, 3, 58),
                insn(0x30, 0, 0, 54),
                insn(0x15, 0, 1, 136),
                insn(0x06, 0, 0, 2048),
                insn(0x06, 0, 0, 0),
            ];
            (f, EtherType::IPV6, filter)
        }
    }
}

struct Measured {
    sent: u64,
    replies: u64,
    secs: f64,
}

/// Unrelated traffic to the node, as a load-balancer node carries it: UDP datagrams to
/// the node's own IPv4 and IPv6 addresses (alternating), none of them ARP or NDP.
fn unrelated_udp(i: usize) -> Vec<u8> {
    let server: MacAddr = netns::SERVER_MAC.parse().unwrap();
    let client: MacAddr = CLIENT_MAC.parse().unwrap();
    let payload = [0u8; 64];
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&server.0);
    f.extend_from_slice(&client.0);
    if i.is_multiple_of(2) {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let src: std::net::Ipv4Addr = netns::CLIENT_V4.parse().unwrap();
        let dst: std::net::Ipv4Addr = netns::SERVER_V4.parse().unwrap();
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&netns::CLIENT_V6.parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&netns::SERVER_V6.parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
    }
    // UDP to the discard port, checksum 0 (no check: it is the speaker's cost that counts).
    f.extend_from_slice(&[0x30, 0x39, 0, 9]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

/// Floods from the client of `lan` for `dur`, at `rate` requests/s or as fast as it can.
fn flood(lan: &Lan, proto: Proto, rate: Option<u64>, dur: Duration) -> Measured {
    flood_with(lan, proto, rate, dur, 0)
}

/// [`flood`], with `noise` unrelated frames to the node per request.
fn flood_with(lan: &Lan, proto: Proto, rate: Option<u64>, dur: Duration, noise: usize) -> Measured {
    let ifindex = lan.client.ifindex(&lan.client_if);
    let path = format!("/run/netns/{}", lan.client.name);
    let (frame, ethertype, filter) = request(proto);
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            enter(&path);
            let mut sock = PacketSocket::open_with_ring(ifindex, ethertype, &filter).expect("receive socket");
            let mut got = 0u64;
            let mut idle_since: Option<Instant> = None;
            loop {
                match sock.for_each_ring_frame(usize::MAX, |_, _| {}) {
                    n @ 1.. => {
                        got += n as u64;
                        idle_since = None;
                    }
                    0 => {
                        if done.load(Ordering::Acquire) {
                            // Replies still in flight get 200 ms after the last request.
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_millis(200) {
                                break;
                            }
                        }
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
            // Replies that reached the socket but did not fit its buffer were still sent.
            got + sock.take_stats().map(|(_, drops)| drops).unwrap_or(0)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let sender = std::thread::spawn(move || {
        enter(&path);
        let sock = PacketSocket::open(ifindex, 0, &[insn(0x06, 0, 0, 0)]).expect("send socket");
        let frames: Vec<&[u8]> = vec![frame.as_slice(); 64];
        let noise_frames: Vec<Vec<u8>> = (0..64).map(unrelated_udp).collect();
        let noise_refs: Vec<&[u8]> = noise_frames.iter().map(Vec::as_slice).collect();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < dur {
            if let Some(r) = rate {
                let due = (start.elapsed().as_secs_f64() * r as f64) as u64;
                if sent >= due {
                    std::hint::spin_loop();
                    continue;
                }
                let n = (due - sent).min(64) as usize;
                sent += sock.send_batch(&frames[..n]).unwrap_or(0) as u64;
                for _ in 0..noise {
                    let _ = sock.send_all(&noise_refs[..n]);
                }
            } else {
                sent += sock.send_batch(&frames).unwrap_or(0) as u64;
            }
        }
        (sent, start.elapsed().as_secs_f64())
    });
    let (sent, secs) = sender.join().unwrap();
    done.store(true, Ordering::Release);
    Measured { sent, replies: receiver.join().unwrap(), secs }
}

/// Busy CPU seconds of the whole machine so far (all cores, /proc/stat).
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let f: Vec<f64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
    let busy: f64 = f.iter().sum::<f64>() - f[3] - f[4];
    busy / 100.0
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches(" kB").parse().ok()).unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run only
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    netns::require_root();
    // `-- flood` or `-- memory` runs one part; no filter runs both.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    if wants("flood") {
        flood_bench();
    }
    if wants("memory") {
        memory_bench();
    }
    if wants("mixed") {
        mixed_bench();
    }
}

/// The speaker's CPU per reply with and without unrelated traffic to the node (nine UDP
/// datagrams per request, IPv4 and IPv6): a load-balancer node carries heavy traffic, and
/// the speaker must not pay for what it does not answer.
fn mixed_bench() {
    // What one sender thread sustains with nine noise frames per request.
    const RATE: u64 = 20_000;
    let lan = Lan::new();
    let speaker =
        Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &["--gratuitous-count", "0", "--log-level", "warn"]);
    assert!(lan.arping(VIP4, 1).is_some(), "the speaker must answer before the bench");
    println!();
    println!("| traffic | run | requests/s | replies/s | speaker CPU s per 1M replies |");
    println!("|---|---|---|---|---|");
    for run in 1..=3 {
        for (name, noise) in [("ARP only", 0), ("ARP + 9 unrelated UDP per request", 9)] {
            let s0 = process_cpu(speaker.pid());
            let m = flood_with(&lan, Proto::Arp, Some(RATE), Duration::from_secs(3), noise);
            let s1 = process_cpu(speaker.pid());
            println!(
                "| {name} | {run} | {:.0} | {:.0} | {:.2} |",
                m.sent as f64 / m.secs,
                m.replies as f64 / m.secs,
                (s1 - s0) / (m.replies.max(1) as f64 / 1e6)
            );
        }
    }
}

fn flood_bench() {
    let ferrolb = Lan::new();
    let speaker = Speaker::start(
        &ferrolb.server,
        &config(&[VIP4, VIP6], &[]),
        &["--gratuitous-count", "0", "--log-level", "warn"],
    );
    let kernel = Lan::new();
    kernel.server.ip(&["addr", "add", &format!("{VIP4}/32"), "dev", &kernel.server_if]);
    kernel.server.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", &kernel.server_if, "nodad"]);
    assert!(
        ferrolb.arping(VIP4, 1).is_some() && kernel.arping(VIP4, 1).is_some(),
        "both responders must answer before the bench"
    );

    println!(
        "| protocol | responder | offered/s | sent/s | replies/s | reply ratio | responder CPU s per 1M replies | machine CPU s per 1M replies |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for proto in [Proto::Arp, Proto::Ndp] {
        let name = if proto == Proto::Arp { "ARP" } else { "NDP" };
        for rate in RATES.iter().copied().map(Some).chain([None]) {
            for (who, lan) in [("FerroLB", &ferrolb), ("Linux kernel", &kernel)] {
                let (m0, s0) = (machine_cpu(), process_cpu(speaker.pid()));
                let m = flood(lan, proto, rate, rate.map_or(MAX_RUN, |_| RATE_RUN));
                let (m1, s1) = (machine_cpu(), process_cpu(speaker.pid()));
                let per_m = |cpu: f64| {
                    if m.replies == 0 { f64::NAN } else { cpu / (m.replies as f64 / 1e6) }
                };
                let own =
                    if who == "FerroLB" { format!("{:.2}", per_m(s1 - s0)) } else { "(softirq, in machine)".into() };
                println!(
                    "| {name} | {who} | {} | {:.0} | {:.0} | {:.4} | {own} | {:.2} |",
                    rate.map_or("max".to_string(), |r| r.to_string()),
                    m.sent as f64 / m.secs,
                    m.replies as f64 / m.secs,
                    m.replies as f64 / m.sent.max(1) as f64,
                    per_m(m1 - m0),
                );
            }
        }
    }
}

fn memory_bench() {
    // Memory with 10k VIPs (RFC 2544 benchmarking range), answered on one interface.
    let ns = Netns::new("fm");
    let (a, _b) = netns::veth(&ns, &Netns::new("fn"));
    ns.ip(&["link", "set", &a, "up"]);
    let ips: Vec<String> = (0..10_000u32).map(|i| std::net::Ipv4Addr::from(0xc612_0001 + i).to_string()).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let cfg = config(&refs, &[]).replace("198.51.100.10-198.51.100.250", "198.18.0.0/15");
    let big = Speaker::start(&ns, &cfg, &["--gratuitous-count", "0", "--log-level", "warn"]);
    std::thread::sleep(Duration::from_secs(1));
    println!();
    // RSS counts the binary's mapped code too (file-backed, shared, reclaimable); the heap
    // is RssAnon.
    println!(
        "speaker with 10000 VIPs: RSS {} KiB (anonymous {} KiB, file-backed {} KiB), peak RSS {} KiB",
        status_kib(big.pid(), "VmRSS:"),
        status_kib(big.pid(), "RssAnon:"),
        status_kib(big.pid(), "RssFile:"),
        status_kib(big.pid(), "VmHWM:")
    );
}
