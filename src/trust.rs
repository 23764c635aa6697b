//! Which addresses the per-address limits spare, and what counts as one
//! address for them.
//!
//! `--trust CIDR` names networks whose clients skip the limits against
//! abuse from one address (connections, failed logins, command rate);
//! by default that is loopback, so local tools, tests and benchmarks are
//! unaffected. For counting, an IPv4 client is its address and an IPv6
//! client its /64 network: one IPv6 host usually has a whole /64 to pick
//! addresses from, so counting single IPv6 addresses would bound nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and how many of its leading bits matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let shift = width - u32::from(prefix);
    shift >= width || (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/PREFIX`, or a bare address for the single host.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or ADDRESS/PREFIX"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| format!("`{s}`: the prefix must be 0 to {width}"))?,
        };
        Ok(Cidr {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The networks whose clients the per-address limits spare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust(Vec<Cidr>);

impl Trust {
    /// Loopback only: `127.0.0.1/32` and `::1/128`.
    pub fn loopback() -> Trust {
        Trust(vec![
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                prefix: 32,
            },
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }

    /// Nobody: every client is held to the limits.
    pub fn nobody() -> Trust {
        Trust(Vec::new())
    }

    /// These networks.
    pub fn new(networks: Vec<Cidr>) -> Trust {
        Trust(networks)
    }

    /// Whether a client from `ip` skips the per-address limits.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

/// One "address" for the per-address limits: an IPv4 address, or the /64
/// network of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey(u128);

impl IpKey {
    /// The key of a client connecting from `ip`.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpKey(u128::from(u32::from(v4))),
            // The top bit set keeps IPv6 keys apart from IPv4 ones.
            IpAddr::V6(v6) => IpKey((u128::from(v6) >> 64) | (1 << 127)),
        }
    }

    /// The key as a number, to be written down (see [`IpKey::from_bits`]).
    pub fn bits(self) -> u128 {
        self.0
    }

    /// A key written down with [`IpKey::bits`]; `None` for a number that
    /// is no address's key.
    pub fn from_bits(bits: u128) -> Option<IpKey> {
        let v4 = bits <= u128::from(u32::MAX);
        let v6 = bits >> 64 == 1 << 63;
        (v4 || v6).then_some(IpKey(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn networks_contain_what_their_prefix_says() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(!net.contains(ip("2001:db8::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("203.0.113.9")));
        let host: Cidr = "2001:db8::5".parse().expect("cidr");
        assert!(host.contains(ip("2001:db8::5")));
        assert!(!host.contains(ip("2001:db8::6")));
        let v6: Cidr = "2001:db8::/32".parse().expect("cidr");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_is_trusted_by_default_and_nothing_else() {
        let trust = Trust::loopback();
        assert!(trust.trusts(ip("127.0.0.1")));
        assert!(trust.trusts(ip("::1")));
        assert!(trust.trusts(ip("::ffff:127.0.0.1")));
        assert!(!trust.trusts(ip("127.0.0.2")));
        assert!(!Trust::nobody().trusts(ip("127.0.0.1")));
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(IpKey::of(ip("::ffff:10.0.0.1")), IpKey::of(ip("10.0.0.1")));
        assert_ne!(IpKey::of(ip("127.0.0.2")), IpKey::of(ip("127.0.0.1")));
        assert_ne!(IpKey::of(ip("0.0.0.1")), IpKey::of(ip("::1")));
    }

    #[test]
    fn a_key_written_down_reads_back_and_no_other_number_does() {
        for address in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let key = IpKey::of(ip(address));
            assert_eq!(IpKey::from_bits(key.bits()), Some(key), "{address}");
        }
        assert_eq!(IpKey::from_bits(1 << 32), None);
        assert_eq!(IpKey::from_bits(1 << 126), None);
        assert_eq!(IpKey::from_bits((1 << 127) | (1 << 64)), None);
    }
}
