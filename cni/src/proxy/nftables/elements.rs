//! The elements of the global maps and sets, with who wants each: a key two service ports
//! claim (two services listing one external IP and port, two services sharing an endpoint's
//! hairpin entry) is written once, with the value of the first claimant by name, and stays
//! while anyone claims it. Kept up to date per changed service port, so a one-service sync
//! costs nothing for the thousands of ports that did not change.

use std::collections::BTreeMap;

use super::render::Map;
use crate::proxy::model::ServicePortName;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Elements {
    claims: BTreeMap<(Map, String), BTreeMap<ServicePortName, String>>,
}

impl Elements {
    pub(crate) fn claim(&mut self, owner: &ServicePortName, map: Map, key: &str, value: &str) {
        self.claims.entry((map, key.to_string())).or_default().insert(owner.clone(), value.to_string());
    }

    pub(crate) fn release(&mut self, owner: &ServicePortName, map: Map, key: &str) {
        let k = (map, key.to_string());
        if let Some(owners) = self.claims.get_mut(&k) {
            owners.remove(owner);
            if owners.is_empty() {
                self.claims.remove(&k);
            }
        }
    }

    /// The value written for `key` (empty for a set element), if anyone claims it.
    pub(crate) fn written(&self, map: Map, key: &str) -> Option<&str> {
        self.claims.get(&(map, key.to_string())).and_then(|owners| owners.values().next()).map(String::as_str)
    }

    /// Every element as written, in map and key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Map, &str, &str)> {
        self.claims.iter().filter_map(|((map, key), owners)| owners.values().next().map(|v| (*map, key.as_str(), v.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;

    fn owner(name: &str) -> ServicePortName {
        ServicePortName { namespace: "ns".into(), name: name.into(), port: String::new(), protocol: Protocol::Tcp }
    }

    #[test]
    fn the_first_claimant_by_name_wins_and_the_key_stays_while_claimed() {
        let mut e = Elements::default();
        e.claim(&owner("b"), Map::ServiceIps, "k", "goto b");
        e.claim(&owner("a"), Map::ServiceIps, "k", "goto a");
        assert_eq!(e.written(Map::ServiceIps, "k"), Some("goto a"));
        e.release(&owner("a"), Map::ServiceIps, "k");
        assert_eq!(e.written(Map::ServiceIps, "k"), Some("goto b"));
        e.release(&owner("b"), Map::ServiceIps, "k");
        assert_eq!(e.written(Map::ServiceIps, "k"), None);
        assert_eq!(e.iter().count(), 0);
    }
}
