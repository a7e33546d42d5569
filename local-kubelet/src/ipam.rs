//! Per-pod loopback addresses: 127.0.0.N from a range, lowest free first, reused once
//! the pod is gone.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug)]
pub struct Ipam {
    first: u32,
    last: u32,
    /// address → pod UID
    used: BTreeMap<u32, String>,
}

/// Parses `A-B` (e.g. `127.0.0.2-127.0.0.254`) or a CIDR such as `127.0.5.0/24`
/// (network and broadcast addresses left out).
pub fn parse_range(s: &str) -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    let bad = || anyhow::anyhow!("pod address range {s:?}: expected A-B or a CIDR");
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if u32::from(a) > u32::from(b) {
            return Err(bad());
        }
        return Ok((a, b));
    }
    let (net, bits) = s.split_once('/').ok_or_else(bad)?;
    let net: Ipv4Addr = net.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    if !(1..=30).contains(&bits) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - bits);
    let base = u32::from(net) & mask;
    Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from((base | !mask) - 1)))
}

impl Ipam {
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        Self {
            first: u32::from(first),
            last: u32::from(last),
            used: BTreeMap::new(),
        }
    }

    /// The pod's address: the one it already holds, `preferred` (its address before a
    /// kubelet restart) when free and in range, else the lowest free one.
    pub fn allocate(&mut self, uid: &str, preferred: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        if let Some((ip, _)) = self.used.iter().find(|(_, u)| *u == uid) {
            return Some(Ipv4Addr::from(*ip));
        }
        let pick = preferred
            .map(u32::from)
            .filter(|p| (self.first..=self.last).contains(p) && !self.used.contains_key(p))
            .or_else(|| (self.first..=self.last).find(|a| !self.used.contains_key(a)))?;
        self.used.insert(pick, uid.to_owned());
        Some(Ipv4Addr::from(pick))
    }

    pub fn release(&mut self, uid: &str) {
        self.used.retain(|_, u| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn addresses_are_handed_out_lowest_first_and_reused_after_release() {
        let mut ipam = Ipam::new(ip("127.0.0.2"), ip("127.0.0.4"));
        assert_eq!(ipam.allocate("a", None), Some(ip("127.0.0.2")));
        assert_eq!(ipam.allocate("b", None), Some(ip("127.0.0.3")));
        assert_eq!(
            ipam.allocate("a", None),
            Some(ip("127.0.0.2")),
            "stable per pod"
        );
        assert_eq!(ipam.allocate("c", None), Some(ip("127.0.0.4")));
        assert_eq!(ipam.allocate("d", None), None, "range exhausted");
        ipam.release("b");
        assert_eq!(ipam.allocate("d", None), Some(ip("127.0.0.3")));
    }

    #[test]
    fn a_pod_keeps_its_previous_address_when_free() {
        let mut ipam = Ipam::new(ip("127.0.0.2"), ip("127.0.0.9"));
        assert_eq!(
            ipam.allocate("a", Some(ip("127.0.0.7"))),
            Some(ip("127.0.0.7"))
        );
        assert_eq!(
            ipam.allocate("b", Some(ip("127.0.0.7"))),
            Some(ip("127.0.0.2"))
        );
        assert_eq!(
            ipam.allocate("c", Some(ip("10.0.0.1"))),
            Some(ip("127.0.0.3"))
        );
    }

    #[test]
    fn ranges_parse_from_pairs_and_cidrs() {
        assert_eq!(
            parse_range("127.0.0.2-127.0.0.254").expect("pair"),
            (ip("127.0.0.2"), ip("127.0.0.254"))
        );
        assert_eq!(
            parse_range("127.0.5.0/24").expect("cidr"),
            (ip("127.0.5.1"), ip("127.0.5.254"))
        );
        assert!(parse_range("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_range("nonsense").is_err());
    }
}
