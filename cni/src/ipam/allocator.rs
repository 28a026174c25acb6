//! Choosing an address from a range set: the one the container already holds there (so a
//! repeated ADD is idempotent), the one it asked for, or the next free one after the set's
//! last reservation, round-robin across the set's ranges, so a crash-looping container does
//! not get the same address back until the whole set has been gone through.

use std::collections::HashSet;
use std::net::IpAddr;

use super::error::IpamError;
use super::range::{Range, describe, range_for};
use super::store::{Allocation, Store};

/// An address granted to a container, with the range it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub ip: IpAddr,
    pub range: Range,
    /// `false` when the container already held it before this call.
    pub fresh: bool,
}

/// What the caller of [`allocate`] is and wants.
pub struct Request<'a> {
    pub id: &'a str,
    pub ifname: &'a str,
    /// A specific address, already known to lie in this set.
    pub requested: Option<IpAddr>,
}

/// Grants an address from range set number `index`. `existing` is the store's allocations,
/// read under the same lock.
pub fn allocate(store: &Store, set: &[Range], index: usize, req: &Request<'_>, existing: &[Allocation]) -> Result<Grant, IpamError> {
    // The reference refuses a second ADD for the same attachment; we return what it holds,
    // which is what a runtime retrying an ADD after a timeout needs.
    if let Some(held) = existing.iter().find(|a| a.owner.is(req.id, req.ifname) && range_for(set, a.ip).is_some()) {
        if let Some(requested) = req.requested.filter(|r| *r != held.ip) {
            return Err(IpamError::HoldsOther { id: req.id.into(), ifname: req.ifname.into(), held: held.ip, requested, set: index });
        }
        return Ok(grant(set, held.ip, false));
    }
    if let Some(ip) = req.requested {
        let (_, range) = range_for(set, ip).ok_or(IpamError::RequestedOutsideRanges { ip })?;
        if ip == range.gateway {
            return Err(IpamError::RequestedGateway { ip, set: index });
        }
        if !store.reserve(ip, req.id, req.ifname, index)? {
            let owner = existing.iter().find(|a| a.ip == ip).map(|a| a.owner.id.clone()).unwrap_or_default();
            return Err(IpamError::RequestedTaken { ip, owner });
        }
        return Ok(grant(set, ip, true));
    }
    let taken: HashSet<IpAddr> = existing.iter().map(|a| a.ip).collect();
    // A last reservation outside the set (ranges changed) just restarts at the beginning.
    let begin = match store.last_reserved(index).and_then(|ip| range_for(set, ip).map(|(i, _)| (i, ip))) {
        Some((i, ip)) => step(set, i, ip),
        None => (0, set[0].start),
    };
    let mut at = begin;
    loop {
        let (i, ip) = at;
        if ip != set[i].gateway && !taken.contains(&ip) && store.reserve(ip, req.id, req.ifname, index)? {
            return Ok(grant(set, ip, true));
        }
        at = step(set, i, ip);
        if at == begin {
            return Err(IpamError::RangeFull { set: index, ranges: describe(set) });
        }
    }
}

/// The address after `ip` in range `i`, moving on to the next range (cyclically) at its end.
fn step(set: &[Range], i: usize, ip: IpAddr) -> (usize, IpAddr) {
    match set[i].next(ip) {
        Some(next) => (i, next),
        None => {
            let j = (i + 1) % set.len();
            (j, set[j].start)
        }
    }
}

fn grant(set: &[Range], ip: IpAddr, fresh: bool) -> Grant {
    let (_, range) = range_for(set, ip).expect("granted addresses lie in the set");
    Grant { ip, range: range.clone(), fresh }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(subnet: &str, start: &str, end: &str, gateway: &str) -> Range {
        Range { subnet: subnet.parse().unwrap(), start: start.parse().unwrap(), end: end.parse().unwrap(), gateway: gateway.parse().unwrap() }
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        store: Store,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net").unwrap();
        Fixture { _tmp: tmp, store }
    }

    impl Fixture {
        fn add(&self, set: &[Range], id: &str) -> Result<Grant, IpamError> {
            self.add_req(set, id, None)
        }
        fn add_req(&self, set: &[Range], id: &str, requested: Option<&str>) -> Result<Grant, IpamError> {
            let existing = self.store.allocations().unwrap();
            let req = Request { id, ifname: "eth0", requested: requested.map(|r| r.parse().unwrap()) };
            allocate(&self.store, set, 0, &req, &existing)
        }
        fn ip(&self, set: &[Range], id: &str) -> String {
            self.add(set, id).unwrap().ip.to_string()
        }
    }

    #[test]
    fn allocates_in_order_skipping_the_gateway_then_wraps_around() {
        let f = fixture();
        let set = vec![range("10.0.0.0/29", "10.0.0.1", "10.0.0.6", "10.0.0.1")];
        let got: Vec<String> = (0..5).map(|i| f.ip(&set, &format!("c{i}"))).collect();
        assert_eq!(got, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        let err = f.add(&set, "c5").unwrap_err();
        assert!(matches!(err, IpamError::RangeFull { set: 0, .. }), "{err}");
        assert!(err.to_string().contains("10.0.0.1-10.0.0.6"), "{err}");
        // Freed addresses come back only after the cursor wraps round to them.
        f.store.release("10.0.0.3".parse().unwrap()).unwrap();
        f.store.release("10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(f.ip(&set, "c6"), "10.0.0.3");
        assert_eq!(f.ip(&set, "c7"), "10.0.0.5");
    }

    #[test]
    fn round_robin_continues_after_the_last_reservation_across_ranges() {
        let f = fixture();
        let set = vec![
            range("10.0.0.0/24", "10.0.0.10", "10.0.0.11", "10.0.0.1"),
            range("10.1.0.0/24", "10.1.0.1", "10.1.0.2", "10.1.0.1"),
        ];
        assert_eq!(f.ip(&set, "a"), "10.0.0.10");
        f.store.release("10.0.0.10".parse().unwrap()).unwrap();
        assert_eq!(f.ip(&set, "b"), "10.0.0.11");
        assert_eq!(f.ip(&set, "c"), "10.1.0.2");
        assert_eq!(f.ip(&set, "d"), "10.0.0.10");
        assert!(f.add(&set, "e").is_err());
    }

    #[test]
    fn ipv6_and_idempotent_repeat() {
        let f = fixture();
        let set = vec![range("fd00::/64", "fd00::1", "fd00::ffff", "fd00::1")];
        let first = f.add(&set, "c1").unwrap();
        assert_eq!((first.ip.to_string(), first.fresh), ("fd00::2".into(), true));
        let again = f.add(&set, "c1").unwrap();
        assert_eq!((again.ip, again.fresh), (first.ip, false));
        assert_eq!(f.ip(&set, "c2"), "fd00::3");
        assert_eq!(f.store.allocations().unwrap().len(), 2);
    }

    #[test]
    fn requested_addresses() {
        let f = fixture();
        let set = vec![range("10.0.0.0/24", "10.0.0.1", "10.0.0.254", "10.0.0.1")];
        assert_eq!(f.add_req(&set, "a", Some("10.0.0.77")).unwrap().ip.to_string(), "10.0.0.77");
        assert!(matches!(f.add_req(&set, "b", Some("10.0.0.77")), Err(IpamError::RequestedTaken { .. })));
        assert!(matches!(f.add_req(&set, "b", Some("10.0.0.1")), Err(IpamError::RequestedGateway { .. })));
        assert!(matches!(f.add_req(&set, "a", Some("10.0.0.78")), Err(IpamError::HoldsOther { .. })));
        // The round-robin cursor follows requested addresses too, like the reference.
        assert_eq!(f.ip(&set, "c"), "10.0.0.78");
    }
}
