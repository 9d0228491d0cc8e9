//! ARP for Ethernet/IPv4 (RFC 826). Any other hardware or protocol type is rejected.

use std::net::Ipv4Addr;

use super::{MacAddr, WireError, be16};

/// Where each field lies in the packet (RFC 826).
mod field {
    use crate::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

const HTYPE_ETHERNET: u16 = 1;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;
/// Length of an unpadded Ethernet frame carrying one.
pub const FRAME_LEN: usize = super::ethernet::HEADER_LEN + PACKET_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
}

impl ArpOp {
    #[inline]
    fn code(self) -> u16 {
        match self {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
        }
    }
}

/// A checked view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<'a> {
    buf: &'a [u8],
}

impl<'a> ArpPacket<'a> {
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(buf, field::HTYPE) != HTYPE_ETHERNET || buf[field::HLEN] != 6 {
            return Err(WireError::ArpHardware);
        }
        if be16(buf, field::PTYPE) != super::EtherType::IPV4 || buf[field::PLEN] != 4 {
            return Err(WireError::ArpProtocol);
        }
        match be16(buf, field::OPER) {
            1 | 2 => Ok(ArpPacket { buf }),
            _ => Err(WireError::ArpOperation),
        }
    }

    #[inline]
    pub fn op(&self) -> ArpOp {
        if be16(self.buf, field::OPER) == 1 { ArpOp::Request } else { ArpOp::Reply }
    }

    #[inline]
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[field::SHA])
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        ipv4(&self.buf[field::SPA])
    }

    #[inline]
    pub fn target_mac(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[field::THA])
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        ipv4(&self.buf[field::TPA])
    }

    #[inline]
    pub fn to_repr(&self) -> ArpRepr {
        ArpRepr {
            op: self.op(),
            sender_mac: self.sender_mac(),
            sender_ip: self.sender_ip(),
            target_mac: self.target_mac(),
            target_ip: self.target_ip(),
        }
    }
}

#[inline]
fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// The fields of an ARP packet, for building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Writes the packet into `buf[..PACKET_LEN]`. `buf` must be at least that long.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        buf[field::PTYPE].copy_from_slice(&super::EtherType::IPV4.to_be_bytes());
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        buf[field::OPER].copy_from_slice(&self.op.code().to_be_bytes());
        buf[field::SHA].copy_from_slice(&self.sender_mac.0);
        buf[field::SPA].copy_from_slice(&self.sender_ip.octets());
        buf[field::THA].copy_from_slice(&self.target_mac.0);
        buf[field::TPA].copy_from_slice(&self.target_ip.octets());
    }

    /// Writes the packet as a whole Ethernet frame from `eth_src` to `eth_dst`. Returns
    /// [`FRAME_LEN`]; `buf` must be at least that long.
    #[inline]
    pub fn emit_frame(&self, buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr) -> usize {
        self.emit(super::ethernet::emit_header(buf, eth_dst, eth_src, super::EtherType::ARP));
        FRAME_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_other_hardware_and_protocols() {
        let mut p = [0u8; 28];
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(192, 0, 2, 10),
        }
        .emit(&mut p);
        assert!(ArpPacket::parse(&p).is_ok());
        assert_eq!(ArpPacket::parse(&p[..27]).unwrap_err(), WireError::Truncated);

        let mut bad = p;
        bad[1] = 6; // IEEE 802 hardware
        assert_eq!(ArpPacket::parse(&bad).unwrap_err(), WireError::ArpHardware);
        let mut bad = p;
        bad[4] = 8;
        assert_eq!(ArpPacket::parse(&bad).unwrap_err(), WireError::ArpHardware);
        let mut bad = p;
        bad[2..4].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(ArpPacket::parse(&bad).unwrap_err(), WireError::ArpProtocol);
        let mut bad = p;
        bad[5] = 16;
        assert_eq!(ArpPacket::parse(&bad).unwrap_err(), WireError::ArpProtocol);
        let mut bad = p;
        bad[7] = 3; // RARP request
        assert_eq!(ArpPacket::parse(&bad).unwrap_err(), WireError::ArpOperation);
    }
}
