//! ICMPv6 Neighbor Solicitation and Neighbor Advertisement (RFC 4861 §4.3, §4.4), with the
//! receive-side validity checks of §7.1.1 and §7.1.2.

use std::net::Ipv6Addr;

use super::ethernet::{self, EtherType};
use super::ipv6::{self, Ipv6Packet, NEXT_HEADER_ICMPV6, icmpv6_checksum};
use super::{MacAddr, WireError};

pub const TYPE_NS: u8 = 135;
pub const TYPE_NA: u8 = 136;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

/// Where each field lies in an NS or NA message (RFC 4861 §4.3, §4.4), and in a link-layer
/// address option (§4.6.1).
mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// NA: the R, S and O flags; NS: reserved.
    pub const FLAGS: usize = 4;
    /// Type, code, checksum and flags: the 8 bytes before the target.
    pub const HEAD: Field = 0..8;
    pub const TARGET: Field = 8..24;
    pub const OPTIONS: usize = TARGET.end;
    pub const OPT_TYPE: usize = 0;
    pub const OPT_LEN: usize = 1;
    pub const OPT_LL_ADDR: Field = 2..8;
}

/// ICMPv6 header (4) + reserved/flags (4) + target (16).
const BODY_LEN: usize = field::OPTIONS;
/// A link-layer address option for Ethernet.
const LL_OPT_LEN: usize = field::OPT_LL_ADDR.end;
/// Length of an NS or NA frame with one link-layer option, as this crate emits them.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + BODY_LEN + LL_OPT_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicit {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    pub source_ll: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvert {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
    pub target: Ipv6Addr,
    pub target_ll: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpMessage {
    Solicit(NeighborSolicit),
    Advert(NeighborAdvert),
}

impl NdpMessage {
    /// Parses and validates a neighbor discovery message carried by `ip`.
    #[inline(always)]
    pub fn parse(ip: &Ipv6Packet<'_>) -> Result<NdpMessage, WireError> {
        if ip.next_header() != NEXT_HEADER_ICMPV6 {
            return Err(WireError::NotIcmpv6);
        }
        let msg = ip.payload();
        let Some(&kind) = msg.get(field::TYPE) else {
            return Err(WireError::Truncated);
        };
        if kind != TYPE_NS && kind != TYPE_NA {
            return Err(WireError::NotNdp);
        }
        if ip.hop_limit() != 255 {
            return Err(WireError::HopLimit);
        }
        if msg.len() < BODY_LEN {
            return Err(WireError::Truncated);
        }
        if msg[field::CODE] != 0 {
            return Err(WireError::NdpCode);
        }
        if icmpv6_checksum(ip.src(), ip.dst(), msg) != 0 {
            return Err(WireError::Checksum);
        }
        let target = ipv6::addr(&msg[field::TARGET]);
        if target.is_multicast() {
            return Err(WireError::NdpTarget);
        }
        let (src, dst) = (ip.src(), ip.dst());
        let ll = link_layer_option(&msg[BODY_LEN..], if kind == TYPE_NS { OPT_SOURCE_LL } else { OPT_TARGET_LL })?;
        if kind == TYPE_NS {
            // A DAD probe comes from :: to the solicited-node group, without a source option.
            if src.is_unspecified() && (ll.is_some() || !is_solicited_node(dst)) {
                return Err(WireError::NdpSource);
            }
            Ok(NdpMessage::Solicit(NeighborSolicit { src, dst, target, source_ll: ll }))
        } else {
            let flags = msg[field::FLAGS];
            let solicited = flags & 0x40 != 0;
            if solicited && dst.is_multicast() {
                return Err(WireError::NdpSource);
            }
            Ok(NdpMessage::Advert(NeighborAdvert {
                src,
                dst,
                router: flags & 0x80 != 0,
                solicited,
                override_: flags & 0x20 != 0,
                target,
                target_ll: ll,
            }))
        }
    }
}

#[inline]
fn is_solicited_node(ip: Ipv6Addr) -> bool {
    let o = ip.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// Walks the options, rejecting any of zero length or overrunning the message (§7.1.1),
/// and returns the first link-layer address option of type `wanted`.
#[inline(always)]
fn link_layer_option(mut opts: &[u8], wanted: u8) -> Result<Option<MacAddr>, WireError> {
    let mut found = None;
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(WireError::NdpOption);
        }
        let len = usize::from(opts[field::OPT_LEN]) * 8;
        if len == 0 || len > opts.len() {
            return Err(WireError::NdpOption);
        }
        if opts[field::OPT_TYPE] == wanted && found.is_none() && len >= LL_OPT_LEN {
            found = Some(MacAddr::from_slice(&opts[field::OPT_LL_ADDR]));
        }
        opts = &opts[len..];
    }
    Ok(found)
}

/// Writes Ethernet + IPv6 + an NDP body whose first 8 bytes are `head` and which ends in
/// one link-layer option. Returns [`FRAME_LEN`]. `buf` must be at least that long.
#[inline(always)]
fn emit_frame(
    buf: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    head: [u8; 8],
    target: Ipv6Addr,
    (opt, ll): (u8, MacAddr),
) -> usize {
    let ip = ethernet::emit_header(buf, eth_dst, eth_src, EtherType::IPV6);
    let msg_len = BODY_LEN + LL_OPT_LEN;
    ipv6::emit_header(ip, src, dst, NEXT_HEADER_ICMPV6, 255, msg_len as u16);
    let msg = &mut ip[ipv6::HEADER_LEN..ipv6::HEADER_LEN + msg_len];
    msg[field::HEAD].copy_from_slice(&head);
    msg[field::TARGET].copy_from_slice(&target.octets());
    let mut option = [0u8; LL_OPT_LEN];
    option[field::OPT_TYPE] = opt;
    option[field::OPT_LEN] = 1;
    option[field::OPT_LL_ADDR].copy_from_slice(&ll.0);
    msg[field::OPTIONS..].copy_from_slice(&option);
    // Summed from the values, not read back from `msg`: loads spanning the small stores
    // just made stall store forwarding (measured: a third of the cost of an advert).
    let sum = ipv6::Sum::pseudo_header(src, dst, msg_len)
        .u64(u64::from_be_bytes(head))
        .u128(u128::from(target))
        .u64(u64::from_be_bytes(option))
        .checksum();
    msg[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    FRAME_LEN
}

impl NeighborAdvert {
    /// Emits the advertisement as a full Ethernet frame carrying a target link-layer
    /// option with `ll`. Returns the frame length ([`FRAME_LEN`]).
    #[inline]
    pub fn emit_frame(&self, buf: &mut [u8], eth_dst: MacAddr, ll: MacAddr) -> usize {
        let flags = (u8::from(self.router) << 7) | (u8::from(self.solicited) << 6) | (u8::from(self.override_) << 5);
        let head = [TYPE_NA, 0, 0, 0, flags, 0, 0, 0];
        emit_frame(buf, eth_dst, ll, (self.src, self.dst), head, self.target, (OPT_TARGET_LL, ll))
    }
}

impl NeighborSolicit {
    /// Emits the solicitation as a full Ethernet frame from `eth_src`, with a source
    /// link-layer option. Returns the frame length ([`FRAME_LEN`]).
    #[inline]
    pub fn emit_frame(&self, buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr) -> usize {
        let head = [TYPE_NS, 0, 0, 0, 0, 0, 0, 0];
        let ll = self.source_ll.unwrap_or(eth_src);
        emit_frame(buf, eth_dst, eth_src, (self.src, self.dst), head, self.target, (OPT_SOURCE_LL, ll))
    }
}

#[cfg(test)]
mod tests {
    use super::super::EthernetFrame;
    use super::*;

    fn ns_frame() -> Vec<u8> {
        let mut f = vec![0u8; FRAME_LEN];
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        NeighborSolicit {
            src: "2001:db8::1".parse().unwrap(),
            dst: super::super::solicited_node(target),
            target,
            source_ll: None,
        }
        .emit_frame(&mut f, MacAddr([0x33, 0x33, 0xff, 0, 0, 0x10]), MacAddr([2, 0, 0, 0, 0, 1]));
        f
    }

    fn parse(f: &[u8]) -> Result<NdpMessage, WireError> {
        let eth = EthernetFrame::parse(f)?;
        NdpMessage::parse(&Ipv6Packet::parse(eth.payload())?)
    }

    #[test]
    fn emitted_solicit_parses() {
        let NdpMessage::Solicit(ns) = parse(&ns_frame()).unwrap() else { panic!("not NS") };
        assert_eq!(ns.target, "2001:db8::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ns.source_ll, Some(MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn validity_checks() {
        let f = ns_frame();
        let mut bad = f.clone();
        bad[14 + 7] = 64;
        assert_eq!(parse(&bad).unwrap_err(), WireError::HopLimit);
        let mut bad = f.clone();
        bad[14 + 40 + 2] ^= 0xff;
        assert_eq!(parse(&bad).unwrap_err(), WireError::Checksum);
        let mut bad = f.clone();
        bad[14 + 40 + 1] = 1;
        assert_eq!(parse(&bad).unwrap_err(), WireError::NdpCode);
        // A zero-length option, with the checksum fixed up so only the option is wrong.
        let mut bad = f.clone();
        bad[14 + 40 + 25] = 0;
        fix_checksum(&mut bad);
        assert_eq!(parse(&bad).unwrap_err(), WireError::NdpOption);
        let mut bad = f.clone();
        bad[14 + 6] = 17;
        assert_eq!(parse(&bad).unwrap_err(), WireError::NotIcmpv6);
        let mut bad = f;
        bad[14 + 40] = 128;
        assert_eq!(parse(&bad).unwrap_err(), WireError::NotNdp);
    }

    fn fix_checksum(f: &mut [u8]) {
        let ip = Ipv6Packet::parse(&f[14..]).unwrap();
        let (src, dst) = (ip.src(), ip.dst());
        f[14 + 42..14 + 44].copy_from_slice(&[0, 0]);
        let sum = icmpv6_checksum(src, dst, &f[14 + 40..]);
        f[14 + 42..14 + 44].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn dad_probe_rules() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let mut f = vec![0u8; FRAME_LEN];
        NeighborSolicit { src: Ipv6Addr::UNSPECIFIED, dst: target, target, source_ll: None }.emit_frame(
            &mut f,
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 1]),
        );
        // From :: but unicast and with a source option: both forbidden.
        assert_eq!(parse(&f).unwrap_err(), WireError::NdpSource);
    }

    #[test]
    fn advert_round_trip() {
        let na = NeighborAdvert {
            src: "2001:db8::10".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            router: false,
            solicited: true,
            override_: true,
            target: "2001:db8::10".parse().unwrap(),
            target_ll: Some(MacAddr([2, 0, 0, 0, 0, 2])),
        };
        let mut f = vec![0u8; FRAME_LEN];
        na.emit_frame(&mut f, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(parse(&f).unwrap(), NdpMessage::Advert(na));
    }
}
