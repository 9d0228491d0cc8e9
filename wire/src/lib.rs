//! FerroLB's wire formats. Zero-copy views and emitters for the frames a layer-2 speaker handles:
//! Ethernet II (with 802.1Q / 802.1ad tags), ARP for Ethernet/IPv4, IPv6, and the
//! ICMPv6 Neighbor Solicitation / Advertisement messages of RFC 4861.
//!
//! Every parser takes an untrusted byte slice, checks lengths before reading, and
//! returns a [`WireError`] instead of panicking.

pub mod arp;
pub mod ethernet;
pub mod ipv6;
pub mod ndp;

use std::fmt;
use std::str::FromStr;

pub use arp::{ArpOp, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, VlanTag};
pub use ipv6::Ipv6Packet;
pub use ndp::{NdpMessage, NeighborAdvert, NeighborSolicit};

/// Why a frame was rejected. The variants are few and fixed, so they can label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Frame truncated.
    Truncated,
    /// Unsupported ARP hardware type or length.
    ArpHardware,
    /// Unsupported ARP protocol type or length.
    ArpProtocol,
    /// Unknown ARP operation.
    ArpOperation,
    /// Not an IPv6 packet.
    Ipv6Version,
    /// IPv6 payload length exceeds the frame.
    Ipv6Length,
    /// Not an ICMPv6 packet.
    NotIcmpv6,
    /// Not a neighbor discovery message.
    NotNdp,
    /// ICMPv6 code must be 0.
    NdpCode,
    /// NDP hop limit is not 255.
    HopLimit,
    /// ICMPv6 checksum mismatch.
    Checksum,
    /// NDP option with zero length or overrunning the message.
    NdpOption,
    /// NDP target is a multicast address.
    NdpTarget,
    /// NDP source address is invalid for this message.
    NdpSource,
    /// Frame carries an 802.1Q/802.1ad tag.
    VlanTagged,
    /// Sender hardware address is ours, broadcast, multicast or zero.
    BadSender,
    /// Neighbor Solicitation sent to neither the target's solicited-node group nor the target.
    NdpDestination,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "frame truncated",
            WireError::ArpHardware => "unsupported ARP hardware type or length",
            WireError::ArpProtocol => "unsupported ARP protocol type or length",
            WireError::ArpOperation => "unknown ARP operation",
            WireError::Ipv6Version => "not an IPv6 packet",
            WireError::Ipv6Length => "IPv6 payload length exceeds the frame",
            WireError::NotIcmpv6 => "not an ICMPv6 packet",
            WireError::NotNdp => "not a neighbor discovery message",
            WireError::NdpCode => "ICMPv6 code must be 0",
            WireError::HopLimit => "NDP hop limit is not 255",
            WireError::Checksum => "ICMPv6 checksum mismatch",
            WireError::NdpOption => "NDP option with zero length or overrunning the message",
            WireError::NdpTarget => "NDP target is a multicast address",
            WireError::NdpSource => "NDP source address is invalid for this message",
            WireError::VlanTagged => "frame carries an 802.1Q/802.1ad tag",
            WireError::BadSender => "sender hardware address is ours, broadcast, multicast or zero",
            WireError::NdpDestination => {
                "Neighbor Solicitation sent to neither the target's solicited-node group nor the target"
            }
        })
    }
}

impl std::error::Error for WireError {}

impl WireError {
    /// A short, stable name for metric labels.
    #[inline]
    pub fn label(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::ArpHardware => "arp_hardware",
            WireError::ArpProtocol => "arp_protocol",
            WireError::ArpOperation => "arp_operation",
            WireError::Ipv6Version => "ipv6_version",
            WireError::Ipv6Length => "ipv6_length",
            WireError::NotIcmpv6 => "not_icmpv6",
            WireError::NotNdp => "not_ndp",
            WireError::NdpCode => "ndp_code",
            WireError::HopLimit => "hop_limit",
            WireError::Checksum => "checksum",
            WireError::NdpOption => "ndp_option",
            WireError::NdpTarget => "ndp_target",
            WireError::NdpSource => "ndp_source",
            WireError::VlanTagged => "vlan_tagged",
            WireError::BadSender => "bad_sender",
            WireError::NdpDestination => "ndp_destination",
        }
    }
}

/// An IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    #[inline]
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// The Ethernet multicast address an IPv6 multicast address maps to (RFC 2464 §7).
    #[inline]
    pub fn ipv6_multicast(ip: std::net::Ipv6Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    #[inline]
    pub(crate) fn from_slice(b: &[u8]) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&b[..6]);
        MacAddr(m)
    }
}

impl fmt::Display for MacAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMac(pub String);

impl fmt::Display for InvalidMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MAC address {:?}", self.0)
    }
}

impl std::error::Error for InvalidMac {}

impl FromStr for MacAddr {
    type Err = InvalidMac;
    #[inline]
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(|| InvalidMac(s.into()))?;
            if p.is_empty() || p.len() > 2 {
                return Err(InvalidMac(s.into()));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| InvalidMac(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(InvalidMac(s.into()));
        }
        Ok(MacAddr(out))
    }
}

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
#[inline]
pub fn solicited_node(ip: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let o = ip.octets();
    std::net::Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// A field's place in a header, as smoltcp's `wire` writes it: one range per field, used by
/// the parser and the emitter alike, so no offset is written twice.
pub(crate) type Field = std::ops::Range<usize>;

/// The big-endian `u16` at `field` (two bytes long).
#[inline]
pub(crate) fn be16(b: &[u8], field: Field) -> u16 {
    u16::from_be_bytes([b[field.start], b[field.start + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:5e:10:00:0a".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x5e, 0x10, 0, 0x0a]);
        assert_eq!(m.to_string(), "02:00:5e:10:00:0a");
        assert!("02:00:5e:10:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:0a:01".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:zz".parse::<MacAddr>().is_err());
    }

    #[test]
    fn solicited_node_group() {
        let ip: std::net::Ipv6Addr = "2001:db8::1:2345:6789".parse().unwrap();
        assert_eq!(solicited_node(ip), "ff02::1:ff45:6789".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(MacAddr::ipv6_multicast(solicited_node(ip)).to_string(), "33:33:ff:45:67:89");
    }
}
