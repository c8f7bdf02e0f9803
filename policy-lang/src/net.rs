//! Network values: CIDRs and port ranges.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address prefix. IPv4-mapped IPv6 prefixes are stored as IPv4, as the kernel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn width(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a single address. Host bits must be zero.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{addr_text}` is not an IPv4 or IPv6 address"))?;
        let max = width(addr);
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length `{p}` must be between 0 and {max}")),
            },
        };
        let (addr, prefix) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            _ => (addr, prefix),
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network_bits() != cidr.bits_of_addr() {
            return Err(format!(
                "`{text}` has host bits set; the network is `{}`",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    fn bits_of_addr(&self) -> u128 {
        bits(self.addr)
    }

    fn network_bits(&self) -> u128 {
        // IPv4 bits are left-aligned, so the same top-bits mask works for both families.
        bits(self.addr) & mask(self.prefix)
    }

    /// The network with host bits cleared, in the usual text form.
    pub fn network(&self) -> String {
        let n = self.network_bits();
        match self.addr {
            IpAddr::V4(_) => {
                let v = u32::try_from(n >> 96).unwrap_or(0);
                format!("{}/{}", Ipv4Addr::from(v), self.prefix)
            }
            IpAddr::V6(_) => format!("{}/{}", Ipv6Addr::from(n), self.prefix),
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Does this prefix contain `addr` (after folding IPv4-mapped addresses)?
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.addr.is_ipv4() && (bits(addr) & mask(self.prefix)) == bits(self.addr)
    }

    /// Does this prefix contain all of `other`?
    pub fn covers(&self, other: &Cidr) -> bool {
        other.addr.is_ipv4() == self.addr.is_ipv4()
            && other.prefix >= self.prefix
            && (bits(other.addr) & mask(self.prefix)) == bits(self.addr)
    }

    /// The address bits left-aligned in a u128 (IPv4 in the top 32 bits).
    pub fn key_bits(&self) -> u128 {
        bits(self.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses `22` or `8000-8999`.
pub fn parse_ports(text: &str) -> Result<PortRange, String> {
    let one = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number (0-65535)"))
    };
    let range = match text.split_once('-') {
        Some((a, b)) => PortRange {
            lo: one(a)?,
            hi: one(b)?,
        },
        None => {
            let p = one(text)?;
            PortRange { lo: p, hi: p }
        }
    };
    if range.lo > range.hi {
        return Err(format!("port range `{text}` is empty (start after end)"));
    }
    Ok(range)
}

/// Left-aligned address bits of an address, for LPM lookups.
pub fn addr_bits(addr: IpAddr) -> u128 {
    bits(canonical(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("`10.0.0.0/8`"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        let mapped = Cidr::parse("::ffff:192.168.0.0/112").unwrap();
        assert_eq!(mapped, Cidr::parse("192.168.0.0/16").unwrap());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().covers(&c));
    }

    #[test]
    fn parses_ports() {
        assert_eq!(parse_ports("22").unwrap(), PortRange { lo: 22, hi: 22 });
        assert_eq!(parse_ports("8000-8999").unwrap().hi, 8999);
        assert!(parse_ports("9-1").is_err());
        assert!(parse_ports("70000").is_err());
    }
}
