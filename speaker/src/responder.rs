//! The packet hot path, pure: parse a request, look the target up, build the reply.
//! No I/O and no allocation per frame.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_wire::{
    ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, Ipv6Packet, MacAddr, NdpMessage, NeighborAdvert, WireError,
    ndp, solicited_node,
};
use rustc_hash::FxHashMap;

/// Room for the longest frame [`respond`] and the announcement builders emit.
pub const REPLY_BUF: usize = ndp::FRAME_LEN;

/// The addresses answered on one interface. Lookups are one hash probe whatever the size.
/// Keys come from configuration, not from the wire, so a fast non-keyed hash is safe; they
/// are integers because FxHash over `Ipv6Addr`'s bytes collides for addresses that differ
/// only in their last bytes (measured: 1k IPv6 VIPs cost ten times one).
#[derive(Debug, Clone, Default)]
pub struct VipTable {
    v4: FxHashMap<u32, u32>,
    v6: FxHashMap<u128, u32>,
    ips: Vec<IpAddr>,
}

impl VipTable {
    pub fn new(ips: impl IntoIterator<Item = IpAddr>) -> VipTable {
        let mut t = VipTable::default();
        for ip in ips {
            let idx = t.ips.len() as u32;
            let fresh = match ip {
                IpAddr::V4(v4) => t.v4.insert(v4.into(), idx).is_none(),
                IpAddr::V6(v6) => t.v6.insert(v6.into(), idx).is_none(),
            };
            if fresh {
                t.ips.push(ip);
            }
        }
        t
    }

    pub fn ips(&self) -> &[IpAddr] {
        &self.ips
    }

    pub fn v4(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.v4.keys().map(|k| Ipv4Addr::from(*k)).collect();
        v.sort();
        v
    }

    pub fn v6(&self) -> Vec<Ipv6Addr> {
        let mut v: Vec<Ipv6Addr> = self.v6.keys().map(|k| Ipv6Addr::from(*k)).collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        self.ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    pub fn index_of(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(v4) => self.v4.get(&v4.into()).copied(),
            IpAddr::V6(v6) => self.v6.get(&v6.into()).copied(),
        }
    }
}

/// Why a well-formed frame got no reply. Few and fixed: they label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// A request for an address we do not answer (the kernel filter let it through).
    NotOurs,
    /// Sent by this interface's own MAC.
    FromSelf,
    /// Not an ARP request or a Neighbor Solicitation.
    NotRequest,
    /// Another host announcing one of our addresses: a conflict to report.
    Conflict(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `out[..len]` is the reply for VIP number `vip` of the table.
    Reply {
        len: usize,
        vip: u32,
    },
    Ignored(Ignored),
    /// Malformed or invalid: dropped and counted by reason.
    Dropped(WireError),
}

/// Answers one received frame for an interface whose MAC is `mac`, writing any reply
/// into `out` (at least [`REPLY_BUF`] bytes).
pub fn respond(frame: &[u8], mac: MacAddr, table: &VipTable, out: &mut [u8]) -> Verdict {
    let eth = match EthernetFrame::parse(frame) {
        Ok(e) => e,
        Err(e) => return Verdict::Dropped(e),
    };
    if eth.vlan().is_some() {
        return Verdict::Dropped(WireError::VlanTagged);
    }
    if eth.src() == mac {
        return Verdict::Ignored(Ignored::FromSelf);
    }
    // No station sends from a group address: answering one would reply to every host.
    if eth.src().is_multicast() || eth.src() == MacAddr::ZERO {
        return Verdict::Dropped(WireError::BadSender);
    }
    match eth.ethertype() {
        EtherType::ARP => respond_arp(&eth, mac, table, out),
        EtherType::IPV6 => respond_ndp(&eth, mac, table, out),
        _ => Verdict::Ignored(Ignored::NotRequest),
    }
}

fn respond_arp(eth: &EthernetFrame<'_>, mac: MacAddr, table: &VipTable, out: &mut [u8]) -> Verdict {
    let req = match ArpPacket::parse(eth.payload()) {
        Ok(p) => p,
        Err(e) => return Verdict::Dropped(e),
    };
    // Another host's reply (or gratuitous reply) claiming one of our addresses.
    if req.op() == ArpOp::Reply {
        return Verdict::Ignored(match table.v4.get(&u32::from(req.sender_ip())) {
            Some(&vip) => Ignored::Conflict(vip),
            None => Ignored::NotRequest,
        });
    }
    let target = req.target_ip();
    let Some(&vip) = table.v4.get(&u32::from(target)) else {
        return Verdict::Ignored(Ignored::NotOurs);
    };
    // A gratuitous request: another host announcing our address.
    if req.sender_ip() == target {
        return Verdict::Ignored(Ignored::Conflict(vip));
    }
    // A request claiming our MAC, or a group address, as its sender is spoofed: a reply
    // would teach switches and hosts a wrong port, or go to every host (a reply storm).
    let sender_mac = req.sender_mac();
    if sender_mac == mac || sender_mac.is_multicast() || sender_mac == MacAddr::ZERO {
        return Verdict::Dropped(WireError::BadSender);
    }
    let to = sender_mac;
    let len = ArpRepr {
        op: ArpOp::Reply,
        sender_mac: mac,
        sender_ip: target,
        target_mac: sender_mac,
        target_ip: req.sender_ip(),
    }
    .emit_frame(out, to, mac);
    Verdict::Reply { len, vip }
}

fn respond_ndp(eth: &EthernetFrame<'_>, mac: MacAddr, table: &VipTable, out: &mut [u8]) -> Verdict {
    let msg = Ipv6Packet::parse(eth.payload()).and_then(|ip| NdpMessage::parse(&ip));
    let ns = match msg {
        Ok(NdpMessage::Solicit(ns)) => ns,
        Ok(NdpMessage::Advert(na)) => {
            return Verdict::Ignored(match table.v6.get(&u128::from(na.target)) {
                Some(&vip) => Ignored::Conflict(vip),
                None => Ignored::NotRequest,
            });
        }
        Err(WireError::NotIcmpv6 | WireError::NotNdp) => {
            return Verdict::Ignored(Ignored::NotRequest);
        }
        Err(e) => return Verdict::Dropped(e),
    };
    let Some(&vip) = table.v6.get(&u128::from(ns.target)) else {
        return Verdict::Ignored(Ignored::NotOurs);
    };
    // The kernel only receives a solicitation sent to the target's solicited-node group
    // or to the target itself (RFC 4861 §7.2.2); a node answering others would answer
    // what was never meant for it.
    if ns.dst != solicited_node(ns.target) && ns.dst != ns.target {
        return Verdict::Dropped(WireError::NdpDestination);
    }
    // RFC 4861 §7.2.4: a DAD probe (from ::) is answered to all-nodes, unsolicited.
    let dad = ns.src.is_unspecified();
    let (ip_dst, eth_dst) = if dad {
        (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), MacAddr([0x33, 0x33, 0, 0, 0, 1]))
    } else {
        (ns.src, ns.source_ll.unwrap_or(eth.src()))
    };
    let na = NeighborAdvert {
        src: ns.target,
        dst: ip_dst,
        router: false,
        solicited: !dad,
        override_: true,
        target: ns.target,
        target_ll: Some(mac),
    };
    Verdict::Reply { len: na.emit_frame(out, eth_dst, mac), vip }
}

/// A gratuitous ARP of `ip` as an ARP request or reply (MetalLB sends both, as some
/// devices only heed one). Returns the frame length.
pub fn gratuitous_arp(out: &mut [u8], mac: MacAddr, ip: Ipv4Addr, op: ArpOp) -> usize {
    let target_mac = if op == ArpOp::Reply { MacAddr::BROADCAST } else { MacAddr::ZERO };
    ArpRepr { op, sender_mac: mac, sender_ip: ip, target_mac, target_ip: ip }.emit_frame(out, MacAddr::BROADCAST, mac)
}

/// An unsolicited Neighbor Advertisement of `ip` to all-nodes with the override flag, so
/// that neighbors replace a cached link-layer address at once (RFC 4861 §7.2.6).
pub fn unsolicited_na(out: &mut [u8], mac: MacAddr, ip: Ipv6Addr) -> usize {
    NeighborAdvert {
        src: ip,
        dst: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        router: false,
        solicited: false,
        override_: true,
        target: ip,
        target_ll: Some(mac),
    }
    .emit_frame(out, MacAddr([0x33, 0x33, 0, 0, 0, 1]), mac)
}

#[cfg(test)]
mod tests;
