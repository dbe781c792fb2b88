//! IPv4 subnets: parsing `A.B.C.D/N`, overlap, and the routes of the caller's network
//! namespace (`/proc/net/route`), so a new network does not shadow a route in use.
//! IPv6 subnets ([`Subnet6`]) for dual-stack networks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// `.1`, the gateway a bridge network takes by default.
    pub fn first_host(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet> {
        let bad = |reason: &str| Error::Invalid {
            what: "--subnet",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected IPv4 CIDR such as 10.90.0.0/24"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| bad("prefix length must be 8 to 30"))?;
        let net = Subnet { addr, prefix };
        if u32::from(addr) & !net.mask() != 0 {
            return Err(bad(&format!(
                "host bits set (the network is {})",
                Subnet {
                    addr: Ipv4Addr::from(u32::from(addr) & net.mask()),
                    prefix
                }
            )));
        }
        Ok(net)
    }
}

/// An IPv6 subnet `ADDR/N` (N 16 to 120), host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    fn mask(self) -> u128 {
        u128::MAX << (128 - u32::from(self.prefix))
    }

    pub fn contains(self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }

    pub fn overlaps(self, other: Subnet6) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// `::1` of the subnet, the default gateway.
    pub fn first_host(self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) + 1)
    }

    /// A unique local /64 (RFC 4193: `fd` + a 40-bit global ID) taken from `seed`, so
    /// each network of each data root gets its own without coordination.
    pub fn unique_local(seed: &[u8; 5]) -> Subnet6 {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[1..6].copy_from_slice(seed);
        Subnet6 {
            addr: Ipv6Addr::from(b),
            prefix: 64,
        }
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet6> {
        let bad = |reason: &str| Error::Invalid {
            what: "--subnet",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected IPv6 CIDR such as fd00:1::/64"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad("not an IPv6 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (16..=120).contains(p))
            .ok_or_else(|| bad("IPv6 prefix length must be 16 to 120"))?;
        let net = Subnet6 { addr, prefix };
        let masked = Ipv6Addr::from(u128::from(addr) & net.mask());
        if masked != addr {
            return Err(bad(&format!(
                "host bits set (the network is {masked}/{prefix})"
            )));
        }
        Ok(net)
    }
}

/// The IPv4 routes of the caller's network namespace, default route excluded.
pub fn routes() -> Vec<Subnet> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order bytes as a native u32.
            let dst = Ipv4Addr::from(dst.to_ne_bytes());
            (mask != 0).then(|| Subnet {
                addr: dst,
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

/// The first of 10.88.0.0/16, 10.89.0.0/16, ... 10.255.0.0/16 that overlaps none of
/// `taken` (other networks' subnets and the routes in use).
pub fn pick_free(taken: &[Subnet]) -> Option<Subnet> {
    (88..=255u8)
        .map(|b| Subnet {
            addr: Ipv4Addr::new(10, b, 0, 0),
            prefix: 16,
        })
        .find(|s| !taken.iter().any(|t| t.overlaps(*s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_overlap() {
        let a: Subnet = "10.90.0.0/24".parse().unwrap();
        let b: Subnet = "10.90.0.0/16".parse().unwrap();
        let c: Subnet = "10.91.0.0/16".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a) && !b.overlaps(c));
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 90, 0, 1));
        for bad in [
            "10.0.0.0",
            "10.0.0/8",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "x/8",
            "10.0.0.0/4",
        ] {
            let e = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(e.starts_with("--subnet"), "{e}");
        }
        assert_eq!(
            pick_free(&[
                "10.88.0.0/16".parse().unwrap(),
                "10.89.1.0/24".parse().unwrap()
            ]),
            Some("10.90.0.0/16".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_subnets() {
        let a: Subnet6 = "fd00:1::/64".parse().unwrap();
        let b: Subnet6 = "fd00::/16".parse().unwrap();
        let c: Subnet6 = "fd01::/64".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a) && !a.overlaps(c));
        assert_eq!(a.first_host(), "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            Subnet6::unique_local(&[1, 2, 3, 4, 5]).to_string(),
            "fd01:203:405::/64"
        );
        for bad in [
            "fd00::",
            "fd00::1/64",
            "fd00::/8",
            "fd00::/128",
            "10.0.0.0/8",
            "x/64",
        ] {
            let e = bad.parse::<Subnet6>().unwrap_err().to_string();
            assert!(e.starts_with("--subnet"), "{e}");
        }
    }

    #[test]
    fn routes_read() {
        // Loopback has no /proc/net/route entry; whatever is there parses.
        for r in routes() {
            assert!(r.prefix > 0 && r.prefix <= 32);
        }
    }
}
