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

    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }

    pub fn src(&self) -> Ipv6Addr {
        addr(&self.buf[8..24])
    }

    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.buf[24..40])
    }

    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

pub(crate) fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// Writes a fixed IPv6 header into `buf[..40]`.
pub fn emit_header(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload_len: u16,
) {
    buf[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    buf[4..6].copy_from_slice(&payload_len.to_be_bytes());
    buf[6] = next_header;
    buf[7] = hop_limit;
    buf[8..24].copy_from_slice(&src.octets());
    buf[24..40].copy_from_slice(&dst.octets());
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` between `src` and `dst`, computed with
/// the message's own checksum field taken as it is: 0 when verifying a valid message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in src
        .octets()
        .chunks_exact(2)
        .chain(dst.octets().chunks_exact(2))
    {
        sum += u64::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    sum += msg.len() as u64 + u64::from(NEXT_HEADER_ICMPV6);
    let mut words = msg.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
        assert_eq!(
            Ipv6Packet::parse(&p[..47]).unwrap_err(),
            WireError::Ipv6Length
        );
        assert_eq!(
            Ipv6Packet::parse(&p[..39]).unwrap_err(),
            WireError::Truncated
        );
        p[0] = 0x45;
        assert_eq!(Ipv6Packet::parse(&p).unwrap_err(), WireError::Ipv6Version);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut p = [0u8; 60];
        emit_header(&mut p, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 58, 255, 4);
        assert_eq!(Ipv6Packet::parse(&p).unwrap().payload().len(), 4);
    }
}
