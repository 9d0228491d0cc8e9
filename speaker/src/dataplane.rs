//! One task per interface: receives ARP requests and Neighbor Solicitations from two
//! filtered packet sockets, answers them in batches, and sends gratuitous announcements.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_wire::{ArpOp, EtherType, MacAddr, solicited_node};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::announcer::{Outcome, Outcomes};
use crate::bpf;
use crate::interfaces::Interface;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{DropLabels, IpLabel, IpValue, Metrics, SocketLabels, VipCounters};
use crate::responder::{Ignored, REPLY_BUF, Verdict, VipTable, gratuitous_arp, respond, unsolicited_na};
use crate::sys::{BATCH, Ipv6Groups, PACKET_OTHERHOST, PACKET_OUTGOING, PacketSocket, RxMeta};

/// Gratuitous announcements on claiming an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncePolicy {
    /// Rounds sent on claiming (MetalLB: 5).
    pub count: u32,
    /// Time between rounds (MetalLB: about 1 s).
    pub interval: Duration,
    /// After the burst, one more round this often; `None` for no refresh.
    pub refresh: Option<Duration>,
}

impl Default for AnnouncePolicy {
    fn default() -> Self {
        AnnouncePolicy { count: 5, interval: Duration::from_secs(1), refresh: None }
    }
}

/// What one interface answers for, with each address's counters.
#[derive(Debug, Default)]
pub struct InterfaceTable {
    pub vips: VipTable,
    pub counters: Vec<VipCounters>,
    /// When the member these addresses were taken over from was lost, if that is why
    /// this table was made: the failover histogram measures from there.
    pub takeover_since: Option<std::time::Instant>,
    /// Send the full gratuitous burst for every address, not only the newly claimed ones:
    /// a member came back, and while cut off it may have announced addresses it no longer
    /// owns. Its last reply can land after our first round and, within the neighbor's
    /// locktime (1 s on Linux), make it ignore that round: later rounds put it right.
    pub reannounce: bool,
}

impl InterfaceTable {
    pub fn new(ips: impl IntoIterator<Item = IpAddr>, metrics: &Metrics) -> InterfaceTable {
        let vips = VipTable::new(ips);
        let counters = vips.ips().iter().map(|ip| VipCounters::new(metrics, *ip)).collect();
        InterfaceTable { vips, counters, takeover_since: None, reannounce: false }
    }
}

struct Pending {
    ip: IpAddr,
    rounds_left: u32,
    due: Instant,
}

/// Frames drained from one socket before the task yields to others.
const MAX_BATCHES_PER_WAKE: usize = 16;

/// The packet sockets of one interface: one per family it answers for, opened only
/// when it has an address of that family (each socket makes the kernel clone every
/// frame of its EtherType for the filter to judge).
struct Sockets {
    arp: Option<AsyncFd<PacketSocket>>,
    ndp: Option<AsyncFd<PacketSocket>>,
    /// IPv6 memberships of the solicited-node groups (MLD), beside the link-layer ones.
    groups: Ipv6Groups,
}

impl Sockets {
    fn get(&self, proto: Proto) -> Option<&PacketSocket> {
        match proto {
            Proto::Arp => self.arp.as_ref().map(AsyncFd::get_ref),
            Proto::Ndp => self.ndp.as_ref().map(AsyncFd::get_ref),
        }
    }
}

/// Which families an interface answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub fn of(table: &InterfaceTable) -> Families {
        let ips = table.vips.ips();
        Families { v4: ips.iter().any(IpAddr::is_ipv4), v6: ips.iter().any(IpAddr::is_ipv6) }
    }

    /// Whether sockets opened for `self` serve `other` too.
    pub fn covers(self, other: Families) -> bool {
        (self.v4 || !other.v4) && (self.v6 || !other.v6)
    }
}

/// What to do with a received frame, from the kernel's metadata alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Parse what was captured (also a frame cut short: ARP needs only its header).
    Parse,
    /// One of our own transmissions looped back (no `PACKET_IGNORE_OUTGOING`).
    Own,
    Drop(&'static str),
}

/// The kernel's filter already drops outgoing and tagged frames; this is the check for
/// what reaches user space regardless (an old kernel without the ancillary loads).
pub fn admit(meta: RxMeta) -> Admit {
    if meta.pkttype == PACKET_OUTGOING {
        Admit::Own
    } else if meta.vlan.is_some() {
        // Tagged for a VLAN: its sub-interface answers it, tagged; answering here would
        // reply untagged, on the native VLAN.
        Admit::Drop("vlan")
    } else if meta.pkttype == PACKET_OTHERHOST {
        Admit::Drop("other_host")
    } else {
        Admit::Parse
    }
}

/// A responder on one interface: its sockets, and the state [`Core`] the loop mutates.
pub struct Responder {
    io: Sockets,
    core: Core,
}

struct Core {
    iface: Interface,
    table: Arc<InterfaceTable>,
    groups: BTreeSet<MacAddr>,
    ipv6_groups: BTreeSet<std::net::Ipv6Addr>,
    pending: Vec<Pending>,
    policy: AnnouncePolicy,
    metrics: Arc<Metrics>,
    replies: Box<[[u8; REPLY_BUF]; BATCH]>,
    warned_conflicts: HashSet<IpAddr>,
    /// Counters resolved once per reason (a bounded set), so that a flood of bad frames
    /// costs an atomic increment each, not a label string and a hash.
    dropped: HashMap<&'static str, Counter>,
    outcomes: Outcomes,
    /// Filter misses and send errors, per protocol.
    misses: [Counter; 2],
    send_errors: [Counter; 2],
    warned_send: bool,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("iface", &self.core.iface).finish_non_exhaustive()
    }
}

impl Responder {
    /// Opens the interface's sockets for `families`, with filters for nothing yet;
    /// [`Responder::run`] applies tables as they arrive.
    pub fn open(
        iface: Interface,
        families: Families,
        policy: AnnouncePolicy,
        metrics: Arc<Metrics>,
        outcomes: Outcomes,
    ) -> io::Result<Responder> {
        let arp = match families.v4 {
            true => {
                Some(PacketSocket::open_with_ring(iface.index, EtherType::ARP, &bpf::arp_filter(&[]))?.into_async()?)
            }
            false => None,
        };
        let ndp = match families.v6 {
            true => {
                Some(PacketSocket::open_with_ring(iface.index, EtherType::IPV6, &bpf::ndp_filter(&[]))?.into_async()?)
            }
            false => None,
        };
        let io = Sockets { arp, ndp, groups: Ipv6Groups::new(iface.index) };
        let counters = |family: &Family<SocketLabels, Counter>| {
            [Proto::Arp, Proto::Ndp].map(|p| {
                let labels = SocketLabels { interface: iface.name.clone(), protocol: p.label().into() };
                family.get_or_create(&labels).clone()
            })
        };
        let (misses, send_errors) = (counters(&metrics.filter_misses), counters(&metrics.send_errors));
        let core = Core {
            outcomes,
            iface,
            table: Arc::default(),
            groups: BTreeSet::new(),
            ipv6_groups: BTreeSet::new(),
            pending: Vec::new(),
            policy,
            metrics,
            replies: Box::new([[0; REPLY_BUF]; BATCH]),
            warned_conflicts: HashSet::new(),
            dropped: HashMap::new(),
            misses,
            send_errors,
            warned_send: false,
        };
        Ok(Responder { io, core })
    }

    /// Serves until the sender of `tables` is dropped.
    pub async fn run(self, mut tables: watch::Receiver<Arc<InterfaceTable>>) {
        let Responder { mut io, mut core } = self;
        let first = tables.borrow_and_update().clone();
        core.apply(&mut io, first);
        let mut stats = tokio::time::interval(Duration::from_secs(1));
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_due = core.pending.iter().map(|p| p.due).min();
            tokio::select! {
                changed = tables.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let t = tables.borrow_and_update().clone();
                    core.apply(&mut io, t);
                }
                ready = readable(&mut io.arp) => match ready {
                    Ok(mut guard) => if core.drain(guard.get_inner_mut(), Proto::Arp) { guard.clear_ready() },
                    Err(e) => warn!(interface = %core.iface.name, error = %e, "ARP socket failed"),
                },
                ready = readable(&mut io.ndp) => match ready {
                    Ok(mut guard) => if core.drain(guard.get_inner_mut(), Proto::Ndp) { guard.clear_ready() },
                    Err(e) => warn!(interface = %core.iface.name, error = %e, "NDP socket failed"),
                },
                _ = sleep_until(next_due) => core.announce_due(&io),
                _ = stats.tick() => core.collect_stats(&io),
            }
        }
        core.collect_stats(&io);
        debug!(interface = %core.iface.name, "responder stopped");
    }
}

async fn readable(
    sock: &mut Option<AsyncFd<PacketSocket>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, PacketSocket>> {
    match sock {
        Some(s) => s.readable_mut().await,
        None => std::future::pending().await,
    }
}

impl Core {
    /// Swaps in a new table: requests for released addresses go unanswered from this
    /// moment; claimed ones get the filter, the multicast group and an announcement burst.
    fn apply(&mut self, io: &mut Sockets, table: Arc<InterfaceTable>) {
        let old = std::mem::replace(&mut self.table, table);
        let name = &self.iface.name;
        let (v4, v6) = (self.table.vips.v4(), self.table.vips.v6());
        if let Some(Err(e)) = io.get(Proto::Arp).map(|s| s.set_filter(&bpf::arp_filter(&v4))) {
            warn!(interface = %name, error = %e, "cannot update the ARP filter");
        }
        if let Some(Err(e)) = io.get(Proto::Ndp).map(|s| s.set_filter(&bpf::ndp_filter(&v6))) {
            warn!(interface = %name, error = %e, "cannot update the NDP filter");
        }
        if let Some(ndp) = io.get(Proto::Ndp) {
            let groups: BTreeSet<MacAddr> = v6.iter().map(|ip| MacAddr::ipv6_multicast(solicited_node(*ip))).collect();
            for (g, join) in self
                .groups
                .difference(&groups)
                .map(|g| (g, false))
                .chain(groups.difference(&self.groups).map(|g| (g, true)))
            {
                if let Err(e) = ndp.multicast_membership(*g, join) {
                    warn!(interface = %name, group = %g, join, error = %e, "cannot change multicast membership");
                }
            }
            self.groups = groups;
        }
        let ipv6_groups: BTreeSet<std::net::Ipv6Addr> = v6.iter().map(|ip| solicited_node(*ip)).collect();
        for g in self.ipv6_groups.difference(&ipv6_groups) {
            if let Err(e) = io.groups.leave(*g) {
                debug!(interface = %name, group = %g, error = %e, "cannot leave the IPv6 group");
            }
        }
        for g in ipv6_groups.difference(&self.ipv6_groups) {
            // Without IPv6 on the interface there is no MLD to send: the link-layer
            // membership above still lets the solicitations in.
            if let Err(e) = io.groups.join(*g) {
                warn!(interface = %name, group = %g, error = %e, "cannot join the IPv6 group (no MLD report will be sent)");
            }
        }
        self.ipv6_groups = ipv6_groups;
        let now = Instant::now();
        self.pending.retain(|p| self.table.vips.index_of(p.ip).is_some());
        let mut claimed = false;
        for ip in self.table.vips.ips() {
            if old.vips.index_of(*ip).is_none() {
                info!(interface = %name, %ip, "announcing");
                claimed = true;
                if self.policy.count > 0 {
                    self.pending.push(Pending { ip: *ip, rounds_left: self.policy.count, due: now });
                }
            } else if self.table.reannounce && self.policy.count > 0 && !self.pending.iter().any(|p| p.ip == *ip) {
                self.pending.push(Pending { ip: *ip, rounds_left: self.policy.count, due: now });
            }
        }
        for ip in old.vips.ips() {
            if self.table.vips.index_of(*ip).is_none() {
                info!(interface = %name, %ip, "released");
            }
        }
        self.announce_due(io);
        if claimed && let Some(since) = self.table.takeover_since {
            self.metrics.failover.0.observe(since.elapsed().as_secs_f64());
        }
    }

    /// Answers what is queued on one socket, a batch at a time. Returns true once the
    /// socket's ring is empty.
    fn drain(&mut self, sock: &mut PacketSocket, proto: Proto) -> bool {
        for _ in 0..MAX_BATCHES_PER_WAKE {
            let table = self.table.clone();
            let mut lens = [0usize; BATCH];
            let mut vips = [0u32; BATCH];
            let mut count = 0;
            let n = sock.for_each_ring_frame(BATCH, |frame, meta| {
                match admit(meta) {
                    Admit::Parse => {}
                    Admit::Own => return,
                    Admit::Drop(reason) => return self.drop_frame(reason),
                }
                match respond(frame, self.iface.mac, &table.vips, &mut self.replies[count]) {
                    Verdict::Reply { len, vip } => {
                        table.counters[vip as usize].requests.inc();
                        lens[count] = len;
                        vips[count] = vip;
                        count += 1;
                    }
                    Verdict::Dropped(e) => self.drop_frame(e.label()),
                    Verdict::Ignored(Ignored::Conflict(vip)) => self.conflict(table.vips.ips()[vip as usize]),
                    Verdict::Ignored(Ignored::FromSelf) => self.drop_frame("from_self"),
                    Verdict::Ignored(Ignored::NotOurs | Ignored::NotRequest) => {
                        self.misses[proto as usize].inc();
                    }
                }
            });
            if count > 0 {
                let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
                for (f, (buf, len)) in frames.iter_mut().zip(self.replies.iter().zip(&lens)).take(count) {
                    *f = &buf[..*len];
                }
                let (sent, error) = sock.send_all(&frames[..count]);
                if let Some(e) = error {
                    self.send_failed(proto, count - sent, &e);
                }
                for vip in &vips[..sent] {
                    table.counters[*vip as usize].responses.inc();
                }
            }
            if n < BATCH {
                return true;
            }
        }
        false
    }

    fn send_failed(&mut self, proto: Proto, frames: usize, e: &io::Error) {
        self.send_errors[proto as usize].inc_by(frames as u64);
        if !std::mem::replace(&mut self.warned_send, true) {
            warn!(interface = %self.iface.name, error = %e, "send failed (counted in ferrolb_send_errors; warned once)");
        }
    }

    fn conflict(&mut self, ip: IpAddr) {
        // Rare: the counter is created on first use, not per VIP up front.
        self.metrics.conflicts.get_or_create(&IpLabel { ip: IpValue(ip) }).inc();
        if self.warned_conflicts.insert(ip) {
            warn!(interface = %self.iface.name, %ip, "another host announces an address we own");
            let _ = self.outcomes.send(Outcome::Conflict(ip));
        }
    }

    fn drop_frame(&mut self, reason: &'static str) {
        let (metrics, interface) = (&self.metrics, &self.iface.name);
        self.dropped
            .entry(reason)
            .or_insert_with(|| {
                let labels = DropLabels { interface: interface.clone(), reason: reason.into() };
                metrics.frames_dropped.get_or_create(&labels).clone()
            })
            .inc();
    }

    fn announce_due(&mut self, io: &Sockets) {
        let now = Instant::now();
        let mut buf = [0u8; REPLY_BUF];
        for p in self.pending.iter_mut().filter(|p| p.due <= now) {
            let Some(vip) = self.table.vips.index_of(p.ip) else {
                continue;
            };
            let (proto, ops): (Proto, &[Option<ArpOp>]) = match p.ip {
                IpAddr::V4(_) => (Proto::Arp, &[Some(ArpOp::Request), Some(ArpOp::Reply)]),
                IpAddr::V6(_) => (Proto::Ndp, &[None]),
            };
            let mut sent = 0;
            for op in ops {
                let len = match (p.ip, op) {
                    (IpAddr::V4(v4), Some(op)) => gratuitous_arp(&mut buf, self.iface.mac, v4, *op),
                    (IpAddr::V6(v6), _) => unsolicited_na(&mut buf, self.iface.mac, v6),
                    _ => continue,
                };
                let Some(sock) = io.get(proto) else { continue };
                match sock.send_all(&[&buf[..len]]) {
                    (1, _) => sent += 1,
                    (_, e) => {
                        let e = e.unwrap_or_else(|| io::Error::other("not sent"));
                        self.send_errors[proto as usize].inc();
                        if !std::mem::replace(&mut self.warned_send, true) {
                            warn!(interface = %self.iface.name, ip = %p.ip, error = %e, "gratuitous announcement not sent (counted in ferrolb_send_errors; warned once)");
                        }
                    }
                }
            }
            self.table.counters[vip as usize].gratuitous.inc_by(sent);
            p.rounds_left -= 1;
            p.due = now + self.policy.interval;
            if p.rounds_left == 0
                && let Some(refresh) = self.policy.refresh
            {
                p.rounds_left = 1;
                p.due = now + refresh;
            }
        }
        self.pending.retain(|p| p.rounds_left > 0);
    }

    fn collect_stats(&self, io: &Sockets) {
        for proto in [Proto::Arp, Proto::Ndp] {
            let Some(sock) = io.get(proto) else { continue };
            if let Ok((frames, drops)) = sock.take_stats() {
                let l = SocketLabels { interface: self.iface.name.clone(), protocol: proto.label().into() };
                self.metrics.socket_frames.get_or_create(&l).inc_by(frames);
                self.metrics.socket_drops.get_or_create(&l).inc_by(drops);
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Also the index of a protocol's entry in per-protocol arrays.
#[derive(Debug, Clone, Copy)]
enum Proto {
    Arp = 0,
    Ndp = 1,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Arp => "arp",
            Proto::Ndp => "ndp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pkttype: u8, vlan: Option<u16>) -> RxMeta {
        RxMeta { pkttype, truncated: false, vlan }
    }

    /// VLAN 100's ARP reaches `eth0`'s socket too, untagged, with the tag in the ring's
    /// metadata (the kernel untags before packet sockets see a frame; this kernel has no
    /// vlan link type to show it). Only `eth0.100` may answer it: from `eth0` the reply
    /// would leave untagged, on the native VLAN.
    #[test]
    fn a_frame_tagged_for_a_vlan_is_left_to_its_sub_interface() {
        assert_eq!(admit(meta(libc::PACKET_BROADCAST, Some(100))), Admit::Drop("vlan"));
        assert_eq!(admit(meta(libc::PACKET_BROADCAST, Some(0))), Admit::Drop("vlan"), "priority-tagged");
        // On eth0.100's own socket the same request arrives without a tag: answered, and
        // the kernel tags the reply sent through eth0.100.
        assert_eq!(admit(meta(libc::PACKET_BROADCAST, None)), Admit::Parse);
    }

    #[test]
    fn own_and_other_hosts_frames() {
        assert_eq!(admit(meta(PACKET_OUTGOING, None)), Admit::Own);
        assert_eq!(admit(meta(PACKET_OTHERHOST, None)), Admit::Drop("other_host"));
        assert_eq!(admit(RxMeta { pkttype: libc::PACKET_HOST, truncated: true, vlan: None }), Admit::Parse);
    }
}
