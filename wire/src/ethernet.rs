//! Ethernet II frames, optionally carrying 802.1Q / 802.1ad VLAN tags.

use super::{MacAddr, WireError, be16};

/// Where each field of the untagged header lies; a tag inserts [`TAG_LEN`] bytes before
/// the EtherType.
mod field {
    use crate::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    /// A tag's TCI, after its TPID (which takes the EtherType's place).
    pub const TCI: Field = 14..16;
}

pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Length of one 802.1Q / 802.1ad tag.
const TAG_LEN: usize = 4;

/// EtherType values the speaker cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherType;

impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
}

/// A VLAN tag (the TCI of an 802.1Q header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

impl VlanTag {
    #[inline]
    pub fn vid(self) -> u16 {
        self.tci & 0x0fff
    }
}

/// A view of an Ethernet II frame. Up to two VLAN tags are parsed and skipped.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
    /// Offset of the EtherType that names the payload (12, 16 or 20).
    type_at: usize,
}

impl<'a> EthernetFrame<'a> {
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut type_at = field::ETHERTYPE.start;
        for _ in 0..2 {
            let t = be16(buf, type_at..type_at + 2);
            if t != EtherType::VLAN && t != EtherType::QINQ {
                break;
            }
            type_at += TAG_LEN;
            if buf.len() < type_at + 2 {
                return Err(WireError::Truncated);
            }
        }
        Ok(EthernetFrame { buf, type_at })
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[field::DESTINATION])
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[field::SOURCE])
    }

    /// The outermost VLAN tag, if the frame carries one.
    #[inline]
    pub fn vlan(&self) -> Option<VlanTag> {
        (self.type_at > field::ETHERTYPE.start)
            .then(|| VlanTag { tpid: be16(self.buf, field::ETHERTYPE), tci: be16(self.buf, field::TCI) })
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buf, self.type_at..self.type_at + 2)
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.type_at + 2..]
    }
}

/// Writes an untagged Ethernet header into `buf[..14]`; returns the payload slice.
/// `buf` must be at least [`HEADER_LEN`] bytes long.
#[inline]
pub fn emit_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) -> &mut [u8] {
    buf[field::DESTINATION].copy_from_slice(&dst.0);
    buf[field::SOURCE].copy_from_slice(&src.0);
    buf[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    &mut buf[HEADER_LEN..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tagged_and_untagged() {
        let mut f = [0u8; 64];
        f[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
        let e = EthernetFrame::parse(&f).unwrap();
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert!(e.vlan().is_none());
        assert_eq!(e.payload().len(), 50);

        f[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        f[14..16].copy_from_slice(&0x2064u16.to_be_bytes());
        f[16..18].copy_from_slice(&EtherType::ARP.to_be_bytes());
        let e = EthernetFrame::parse(&f).unwrap();
        assert_eq!(e.ethertype(), EtherType::ARP);
        assert_eq!(e.vlan().unwrap().vid(), 100);
        assert_eq!(e.payload().len(), 46);
    }

    #[test]
    fn rejects_short_frames() {
        assert_eq!(EthernetFrame::parse(&[0; 13]).unwrap_err(), WireError::Truncated);
        let mut f = [0u8; 16];
        f[12..14].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        assert_eq!(EthernetFrame::parse(&f).unwrap_err(), WireError::Truncated);
    }
}
