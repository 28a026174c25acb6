//! Address ranges: a subnet with the inclusive span `[start, end]` handed out from it and its
//! gateway (never handed out). Addresses are compared and stepped as `u128` so IPv4 and IPv6
//! share one code path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

/// The ranges one result IP is taken from (an entry of `ranges`).
pub type RangeSet = Vec<Range>;

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

pub fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

/// IPv4-mapped IPv6 addresses are IPv4, as the reference plugin treats them.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Range {
    pub fn is_v4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// Whether `ip` is one of the addresses this range hands out (or its gateway).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_v4() && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_v4() == other.is_v4()
            && to_u128(self.start) <= to_u128(other.end)
            && to_u128(other.start) <= to_u128(self.end)
    }

    /// The address after `ip` within this range, or `None` at its end.
    pub fn next(&self, ip: IpAddr) -> Option<IpAddr> {
        (ip != self.end).then(|| from_u128(to_u128(ip) + 1, self.is_v4()))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A range set written for messages: `10.0.0.1-10.0.0.254,10.1.0.1-10.1.0.254`.
pub fn describe(set: &[Range]) -> String {
    set.iter().map(Range::to_string).collect::<Vec<_>>().join(",")
}

/// The range of `set` holding `ip`, with its index.
pub fn range_for(set: &[Range], ip: IpAddr) -> Option<(usize, &Range)> {
    set.iter().enumerate().find(|(_, r)| r.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(subnet: &str, start: &str, end: &str) -> Range {
        let subnet: IpNet = subnet.parse().unwrap();
        Range { subnet, start: start.parse().unwrap(), end: end.parse().unwrap(), gateway: subnet.network() }
    }

    #[test]
    fn contains_overlaps_and_steps() {
        let a = r("10.0.0.0/24", "10.0.0.10", "10.0.0.20");
        let b = r("10.0.0.0/24", "10.0.0.20", "10.0.0.30");
        let c = r("10.0.0.0/24", "10.0.0.21", "10.0.0.30");
        let v6 = r("fd00::/64", "fd00::10", "fd00::20");
        assert!(a.contains("10.0.0.10".parse().unwrap()) && a.contains("10.0.0.20".parse().unwrap()));
        assert!(!a.contains("10.0.0.21".parse().unwrap()));
        assert!(a.overlaps(&b) && !a.overlaps(&c) && !a.overlaps(&v6));
        assert_eq!(a.next("10.0.0.19".parse().unwrap()), Some("10.0.0.20".parse().unwrap()));
        assert_eq!(a.next("10.0.0.20".parse().unwrap()), None);
        assert_eq!(v6.next("fd00::1f".parse().unwrap()), Some("fd00::20".parse().unwrap()));
        assert_eq!(describe(&[a, v6]), "10.0.0.10-10.0.0.20,fd00::10-fd00::20");
    }
}
