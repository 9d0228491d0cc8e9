//! The kernel's own ARP/NDP clients, raw frames injected, and ARP probes that trace who answers.

#[allow(unused_imports)]
use super::*;

/// Every MAC that answers `count` ARP requests for `ip` from `ns` (the kernel's `arping`).
pub fn arping_all(ns: &Netns, ifname: &str, ip: &str, count: u32) -> BTreeSet<String> {
    let out = ns.exec(&["arping", "-c", &count.to_string(), "-w", "2", "-I", ifname, ip]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split("bytes from ").nth(1)?.split_whitespace().next().map(str::to_lowercase))
        .collect()
}

/// The target link-layer address `ndisc6` gets for `ip` from `ns`, if any.
pub fn ndisc6(ns: &Netns, ifname: &str, ip: &str) -> Option<String> {
    let out = ns.exec(&["ndisc6", "-1", "-r", "2", "-w", "500", ip, ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.split("Target link-layer address: ").nth(1).map(|m| m.trim().to_lowercase()))
}

/// One `ping` (or `ping -6`) from `ns`.
pub fn ping(ns: &Netns, ip: &str) -> bool {
    let v6 = if ip.contains(':') { "-6" } else { "-4" };
    ns.exec(&["ping", v6, "-c", "1", "-W", "2", ip]).status.success()
}

/// Sends raw frames out of `ifname` in namespace `ns`, from a thread that joins the
/// namespace (the rest of the test process stays where it is), in batches of 32 with
/// `pause` between batches.
pub fn inject(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>, pause: Duration) {
    let ifindex = ns.ifindex(ifname);
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        enter(&path);
        // Protocol 0: this socket only sends, it receives nothing.
        let sock = ferrolb_speaker::sys::PacketSocket::open(ifindex, 0, &ferrolb_speaker::bpf::arp_filter(&[]))
            .expect("packet socket");
        for chunk in frames.chunks(32) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < refs.len() {
                match sock.send_batch(&refs[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
            std::thread::sleep(pause);
        }
    })
    .join()
    .expect("injector thread");
}

/// What a client saw while probing one IPv4 address with ARP requests at a fixed rate:
/// the replies and the gratuitous ARPs, each with its time and MAC.
#[derive(Debug, Default)]
pub struct ArpTrace {
    pub start: Option<Instant>,
    pub replies: Vec<(Instant, String)>,
    pub gratuitous: Vec<(Instant, String)>,
}

impl ArpTrace {
    /// The longest time without a reply between `from` and the last reply.
    pub fn longest_silence(&self, from: Instant) -> Duration {
        let mut last = from;
        let mut worst = Duration::ZERO;
        for (t, _) in self.replies.iter().filter(|(t, _)| *t >= from) {
            worst = worst.max(t.duration_since(last));
            last = *t;
        }
        worst
    }

    /// The first reply (or gratuitous ARP) after `from` from a MAC other than `old`.
    pub fn first_from_other(list: &[(Instant, String)], from: Instant, old: &str) -> Option<(Instant, String)> {
        list.iter().find(|(t, m)| *t >= from && m != old).cloned()
    }
}

/// Probes `vip` from the client every `every` until `stop` is set; returns the trace.
pub fn arp_probe(
    lan: &ClusterLan,
    vip: &str,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<ArpTrace> {
    arp_probe_from(&lan.client, &lan.client_if, CLIENT_MAC, CLIENT_V4, vip, every, stop)
}

/// [`arp_probe`] from any client: its namespace, interface, MAC and IPv4 address.
pub fn arp_probe_from(
    client: &Netns,
    client_if: &str,
    client_mac: &str,
    client_ip: &str,
    vip: &str,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<ArpTrace> {
    use ferrolb_wire::{ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, MacAddr};
    let ifindex = client.ifindex(client_if);
    let path = format!("/run/netns/{}", client.name);
    let vip: std::net::Ipv4Addr = vip.parse().expect("IPv4 VIP");
    let client: MacAddr = client_mac.parse().expect("client MAC");
    let client_ip: std::net::Ipv4Addr = client_ip.parse().expect("client IPv4");
    std::thread::spawn(move || {
        enter(&path);
        let mut sock = ferrolb_speaker::sys::PacketSocket::open_with_ring(
            ifindex,
            EtherType::ARP,
            &ferrolb_speaker::bpf::accept_all(),
        )
        .expect("probe socket");
        let mut req = vec![0u8; 42];
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: client,
            sender_ip: client_ip,
            target_mac: MacAddr::ZERO,
            target_ip: vip,
        }
        .emit_frame(&mut req, MacAddr::BROADCAST, client);
        let mut trace = ArpTrace { start: Some(Instant::now()), ..Default::default() };
        let mut next = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let now = Instant::now();
            if now >= next {
                let _ = sock.send_batch(&[&req]);
                next += every;
            }
            sock.for_each_ring_frame(usize::MAX, |frame, _| {
                let Ok(eth) = EthernetFrame::parse(frame) else { return };
                let Ok(arp) = ArpPacket::parse(eth.payload()) else { return };
                let at = Instant::now();
                let mac = arp.sender_mac().to_string();
                if arp.sender_ip() == vip && arp.target_ip() == vip {
                    trace.gratuitous.push((at, mac));
                } else if arp.op() == ArpOp::Reply && arp.sender_ip() == vip && arp.target_ip() == client_ip {
                    trace.replies.push((at, mac));
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
        trace
    })
}
