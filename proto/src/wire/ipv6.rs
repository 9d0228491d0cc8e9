//! The fixed IPv6 header (RFC 8200). Extension headers are not walked: neighbor discovery
//! messages carry none.

use std::net::Ipv6Addr;

use super::{WireError, be16};

pub const HEADER_LEN: usize = 40;
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
        if buf[0] >> 4 != 6 {
            return Err(WireError::Ipv6Version);
        }
        let end = HEADER_LEN + usize::from(be16(buf, 4));
        if end > buf.len() {
            return Err(WireError::Ipv6Length);
        }
        Ok(Ipv6Packet { buf: &buf[..end] })
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }

    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.buf[8..24])
    }

    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.buf[24..40])
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

#[inline]
pub(crate) fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Writes a fixed IPv6 header into `buf[..40]`.
#[inline]
pub fn emit_header(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8, payload_len: u16) {
    buf[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    buf[4..6].copy_from_slice(&payload_len.to_be_bytes());
    buf[6] = next_header;
    buf[7] = hop_limit;
    buf[8..24].copy_from_slice(&src.octets());
    buf[24..40].copy_from_slice(&dst.octets());
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` between `src` and `dst`, computed with
/// the message's own checksum field taken as it is: 0 when verifying a valid message.
#[inline]
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    // The one's-complement sum is taken 64 bits at a time with end-around carry and
    // folded at the end (RFC 1071 §2(B)): a quarter of the steps of 16-bit words.
    #[inline]
    fn add(acc: u64, x: u64) -> u64 {
        let (sum, carry) = acc.overflowing_add(x);
        sum + u64::from(carry)
    }
    let (s, d) = (u128::from(src), u128::from(dst));
    let mut acc = add(add(s as u64, (s >> 64) as u64), add(d as u64, (d >> 64) as u64));
    acc = add(acc, ((msg.len() as u64) << 32) | u64::from(NEXT_HEADER_ICMPV6));
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        acc = add(acc, u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    acc = add(acc, u64::from_be_bytes(tail));
    let mut folded = (acc & 0xffff_ffff) + (acc >> 32);
    while folded > 0xffff {
        folded = (folded & 0xffff) + (folded >> 16);
    }
    !(folded as u16)
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
