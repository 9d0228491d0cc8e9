//! Address ranges as IPAddressPools write them: CIDRs and `start-end` ranges.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// An inclusive range of addresses of one family, held as integers so that a /64 costs
/// no more than a /32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    pub family: Family,
    pub start: u128,
    pub end: u128,
}

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub fn u128_to_ip(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4((n as u32).into()),
        Family::V6 => IpAddr::V6(n.into()),
    }
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.start..=self.end).contains(&ip_to_u128(ip))
    }

    /// The number of addresses, saturating at `u128::MAX` for the whole IPv6 space.
    pub fn size(&self) -> u128 {
        (self.end - self.start).saturating_add(1)
    }

    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family == other.family && self.start <= other.end && other.start <= self.end
    }

    /// The shortest prefix length among the CIDRs that exactly cover the range (a CIDR's
    /// own length; for `a-b`, that of its largest aligned block), as MetalLB's
    /// `lowestMask` of a pool's CIDRs (internal/config/config.go:1131).
    pub fn widest_prefix(&self) -> u32 {
        let bits = match self.family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        let (mut start, end) = (self.start, self.end);
        let mut widest = bits;
        loop {
            let fits = |k: u32| match k {
                128 => start == 0 && end == u128::MAX,
                _ => start.checked_add((1u128 << k) - 1).is_some_and(|last| last <= end),
            };
            let mut k = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
            while k > 0 && !fits(k) {
                k -= 1;
            }
            widest = widest.min(bits - k);
            match (k < 128).then(|| start.checked_add(1u128 << k)).flatten() {
                Some(next) if next <= end => start = next,
                _ => return widest,
            }
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", u128_to_ip(self.family, self.start), u128_to_ip(self.family, self.end))
    }
}

impl FromStr for IpRange {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidRange { range: s.to_string(), reason: why.to_string() };
        let text = s.trim();
        if let Some((addr, len)) = text.split_once('/') {
            let ip: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address before '/'"))?;
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let len: u32 = len.trim().parse().map_err(|_| bad("prefix length is not a number"))?;
            if len > bits {
                return Err(bad("prefix length is longer than the address"));
            }
            // Host bits are masked off, as `net.ParseCIDR` does for MetalLB.
            let host = u128::MAX.checked_shr(128 - (bits - len)).unwrap_or(0);
            let n = ip_to_u128(ip);
            return Ok(IpRange { family: Family::of(ip), start: n & !host, end: n | host });
        }
        let Some((a, b)) = text.split_once('-') else {
            // MetalLB's ParseCIDR (`internal/config/config.go`) refuses a bare address, so a
            // pool FerroLB accepted would break on the way back.
            return Err(match text.parse::<IpAddr>() {
                Ok(ip) => bad(&format!(
                    "a bare address is neither a CIDR nor a range (MetalLB refuses it too): write {ip}/{} for this one address",
                    if ip.is_ipv4() { 32 } else { 128 }
                )),
                Err(_) => bad("not a CIDR (a.b.c.d/n) or a range (a-b)"),
            });
        };
        let start: IpAddr = a.trim().parse().map_err(|_| bad("range start is not an IP address"))?;
        let end: IpAddr = b.trim().parse().map_err(|_| bad("range end is not an IP address"))?;
        if Family::of(start) != Family::of(end) {
            return Err(bad("range mixes IPv4 and IPv6"));
        }
        let (start_n, end_n) = (ip_to_u128(start), ip_to_u128(end));
        if start_n > end_n {
            return Err(bad("range start is after its end"));
        }
        Ok(IpRange { family: Family::of(start), start: start_n, end: end_n })
    }
}

/// MetalLB's `avoidBuggyIPs`: IPv4 addresses ending in .0 or .255 confuse some firmware.
pub fn is_buggy_ip(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_and_ranges() {
        assert_eq!(r("192.0.2.0/30").to_string(), "192.0.2.0-192.0.2.3");
        assert_eq!(r("192.0.2.7/30").to_string(), "192.0.2.4-192.0.2.7");
        assert_eq!(r("192.0.2.10 - 192.0.2.20").size(), 11);
        assert_eq!(r("192.0.2.9/32").size(), 1);
        assert_eq!(r("2001:db8::/64").size(), 1 << 64);
        assert_eq!(r("::/0").size(), u128::MAX);
        assert_eq!(r("0.0.0.0/0").size(), 1 << 32);
        assert!(r("2001:db8::/120").contains("2001:db8::ff".parse().unwrap()));
        assert!(!r("2001:db8::/120").contains("192.0.2.1".parse().unwrap()));
        assert_eq!(r("192.0.2.5-192.0.2.5"), r("192.0.2.5/32"));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "192.0.2.0/33",
            "192.0.2.300-192.0.2.310",
            "192.0.2.9-192.0.2.1",
            "192.0.2.1-2001:db8::1",
            "pool",
            "",
            "192.0.2.7",
            "2001:db8::7",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_bare_address_suggests_a_host_prefix() {
        let err = "198.51.100.7".parse::<IpRange>().unwrap_err().to_string();
        assert!(err.contains("198.51.100.7/32"), "{err}");
        let err = "2001:db8::7".parse::<IpRange>().unwrap_err().to_string();
        assert!(err.contains("2001:db8::7/128"), "{err}");
    }

    #[test]
    fn buggy_ips() {
        assert!(is_buggy_ip("198.51.100.0".parse().unwrap()));
        assert!(is_buggy_ip("198.51.100.255".parse().unwrap()));
        assert!(!is_buggy_ip("198.51.100.1".parse().unwrap()));
        assert!(!is_buggy_ip("2001:db8::ff".parse().unwrap()));
    }
}
