//! The fixed IPv6 header (RFC 8200). Extension headers are not walked: neighbor discovery
//! messages carry none.

use std::net::Ipv6Addr;

use super::{WireError, be16};

/// Where each field of the fixed header lies (RFC 8200 §3).
mod field {
    use crate::Field;
    /// Version, traffic class and flow label.
    pub const VER_TC_FLOW: Field = 0..4;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

pub const HEADER_LEN: usize = field::DST_ADDR.end;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// A checked view of an IPv6 packet; trailing Ethernet padding is excluded from the payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[field::VER_TC_FLOW.start] >> 4 != 6 {
            return Err(WireError::Ipv6Version);
        }
        let end = HEADER_LEN + usize::from(be16(buf, field::PAYLOAD_LEN));
        if end > buf.len() {
            return Err(WireError::Ipv6Length);
        }
        Ok(Ipv6Packet { buf: &buf[..end] })
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buf[field::NEXT_HEADER]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buf[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.buf[field::SRC_ADDR])
    }

    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.buf[field::DST_ADDR])
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

#[inline]
pub(crate) fn addr(b: &[u8]) -> Ipv6Addr {
    // Through u128, not a byte array: LLVM then keeps the address in registers instead of
    // splitting it into sixteen byte stores that a later 16-byte load must wait for.
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(u128::from_be_bytes(o))
}

/// Writes a fixed IPv6 header into `buf[..40]`.
#[inline(always)]
pub fn emit_header(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8, payload_len: u16) {
    buf[field::VER_TC_FLOW].copy_from_slice(&[0x60, 0, 0, 0]);
    buf[field::PAYLOAD_LEN].copy_from_slice(&payload_len.to_be_bytes());
    buf[field::NEXT_HEADER] = next_header;
    buf[field::HOP_LIMIT] = hop_limit;
    buf[field::SRC_ADDR].copy_from_slice(&src.octets());
    buf[field::DST_ADDR].copy_from_slice(&dst.octets());
}

/// A one's-complement sum (RFC 1071) kept as plain 32-bit words added into 64 bits: no
/// carry chain between steps (so they run in parallel), and no overflow before 2^32 words.
/// Folded to 16 bits only at the end.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum(u64);

impl Sum {
    /// The ICMPv6 pseudo-header (RFC 8200 §8.1) for a message of `len` bytes.
    #[inline(always)]
    pub(crate) fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Sum {
        Sum::default()
            .u128(u128::from(src))
            .u128(u128::from(dst))
            .u64(((len as u64) << 32) | u64::from(NEXT_HEADER_ICMPV6))
    }

    #[inline(always)]
    pub(crate) fn u64(self, x: u64) -> Sum {
        Sum(self.0 + (x >> 32) + (x & 0xffff_ffff))
    }

    #[inline(always)]
    pub(crate) fn u128(self, x: u128) -> Sum {
        self.u64(x as u64).u64((x >> 64) as u64)
    }

    /// Adds `bytes` as big-endian words, the last one zero-padded.
    #[inline(always)]
    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Sum {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self = self.u64(u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        // Byte by byte: a variable-length copy into a padded word would call memcpy.
        let mut tail = 0u64;
        for (i, b) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(*b) << (56 - 8 * i);
        }
        self.u64(tail)
    }

    /// The checksum: the folded sum, complemented.
    #[inline(always)]
    pub(crate) fn checksum(self) -> u16 {
        let mut folded = self.0;
        while folded > 0xffff {
            folded = (folded & 0xffff) + (folded >> 16);
        }
        !(folded as u16)
    }
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` between `src` and `dst`, computed with
/// the message's own checksum field taken as it is: 0 when verifying a valid message.
#[inline(always)]
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    Sum::pseudo_header(src, dst, msg.len()).bytes(msg).checksum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_headers() {
        let mut p = [0u8; 48];
        emit_header(&mut p, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 58, 255, 8);
        let v = Ipv6Packet::parse(&p).unwrap();
        assert_eq!(v.payload().len(), 8);
        assert_eq!(Ipv6Packet::parse(&p[..47]).unwrap_err(), WireError::Ipv6Length);
        assert_eq!(Ipv6Packet::parse(&p[..39]).unwrap_err(), WireError::Truncated);
        p[0] = 0x45;
        assert_eq!(Ipv6Packet::parse(&p).unwrap_err(), WireError::Ipv6Version);
    }

    /// The RFC 1071 definition, 16 bits at a time, as a reference for the fast one.
    fn reference(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
        let mut data = Vec::new();
        data.extend_from_slice(&src.octets());
        data.extend_from_slice(&dst.octets());
        data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
        data.extend_from_slice(msg);
        if data.len() % 2 == 1 {
            data.push(0);
        }
        let mut sum: u32 = data.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest::proptest! {
        #[test]
        fn checksum_matches_rfc1071(src: u128, dst: u128, msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            proptest::prop_assert_eq!(icmpv6_checksum(src, dst, &msg), reference(src, dst, &msg));
        }
    }

    #[test]
    fn padding_is_not_payload() {
        let mut p = [0u8; 60];
        emit_header(&mut p, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 58, 255, 4);
        assert_eq!(Ipv6Packet::parse(&p).unwrap().payload().len(), 4);
    }
}
