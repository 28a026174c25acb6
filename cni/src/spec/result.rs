//! A plugin's success result. Held in the 1.1 shape (a superset of the others) and written in
//! the version the request asked for: 1.0.0 drops the 1.1-only fields, 0.4.0 also gives each IP
//! its `version`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; absent for host-side ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// 1.1 only.
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length, e.g. `10.22.0.5/16`.
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface holding this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1 only, as are the fields below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: None, advmss: None, priority: None, table: None, scope: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty() && self.options.is_empty()
    }
}

const V1_1_INTERFACE_FIELDS: [&str; 3] = ["mtu", "socketPath", "pciID"];
const V1_1_ROUTE_FIELDS: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];

impl CniResult {
    /// The result as the JSON of spec version `version`, `cniVersion` included.
    pub fn to_json(&self, version: Version) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a result always serialises");
        let obj = v.as_object_mut().expect("a result is an object");
        if version < Version::V1_1_0 {
            strip(obj.get_mut("interfaces"), &V1_1_INTERFACE_FIELDS);
            strip(obj.get_mut("routes"), &V1_1_ROUTE_FIELDS);
        }
        if version.is_legacy()
            && let Some(serde_json::Value::Array(ips)) = obj.get_mut("ips") {
                for ip in ips.iter_mut() {
                    let is_v4 = ip["address"].as_str().is_some_and(|a| !a.contains(':'));
                    ip["version"] = serde_json::Value::from(if is_v4 { "4" } else { "6" });
                }
            }
        let mut out = serde_json::Map::new();
        out.insert("cniVersion".into(), version.as_str().into());
        out.extend(std::mem::take(obj));
        serde_json::Value::Object(out)
    }

    /// Reads a result in any supported version (a plugin's stdout, or a `prevResult`).
    pub fn from_json(value: &serde_json::Value) -> Result<(Version, CniResult), Error> {
        let version = value
            .get("cniVersion")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::decode("result has no cniVersion"))?;
        let version = Version::parse(version)?;
        let result: CniResult =
            serde_json::from_value(value.clone()).map_err(|e| Error::decode(format!("cannot decode result: {e}")))?;
        if let Some(bad) = result.ips.iter().find_map(|ip| ip.interface.filter(|i| *i >= result.interfaces.len())) {
            return Err(Error::decode(format!("result has an IP for interface index {bad}, but only {} interfaces", result.interfaces.len())));
        }
        Ok((version, result))
    }
}

fn strip(list: Option<&mut serde_json::Value>, fields: &[&str]) {
    if let Some(serde_json::Value::Array(items)) = list {
        for item in items.iter_mut().filter_map(|i| i.as_object_mut()) {
            for f in fields {
                item.remove(*f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface { name: "cni0".into(), mac: "aa:bb:cc:dd:ee:ff".into(), ..Default::default() },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:dd:ee:01".into(),
                    mtu: Some(1400),
                    sandbox: Some("/var/run/netns/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig { address: "10.22.0.5/16".parse().unwrap(), gateway: Some("10.22.0.1".parse().unwrap()), interface: Some(1) },
                IpConfig { address: "fd00::5/64".parse().unwrap(), gateway: None, interface: Some(1) },
            ],
            routes: vec![Route { mtu: Some(1300), ..Route::new("0.0.0.0/0".parse().unwrap(), None) }],
            dns: Dns { nameservers: vec!["10.96.0.10".into()], ..Default::default() },
        }
    }

    #[test]
    fn writes_each_version_and_reads_it_back() {
        for version in super::super::SUPPORTED_VERSIONS {
            let json = sample().to_json(version);
            assert_eq!(json["cniVersion"], version.as_str());
            let (v, back) = CniResult::from_json(&json).unwrap();
            assert_eq!(v, version);
            assert_eq!(back.ips, sample().ips);
            assert_eq!(back.dns, sample().dns);
        }
    }

    #[test]
    fn legacy_ips_carry_version_and_old_versions_drop_new_fields() {
        let json = sample().to_json(Version::V0_4_0);
        assert_eq!(json["ips"][0]["version"], "4");
        assert_eq!(json["ips"][1]["version"], "6");
        assert!(json["interfaces"][1].get("mtu").is_none());
        assert!(json["routes"][0].get("mtu").is_none());
        let json = sample().to_json(Version::V1_0_0);
        assert!(json["ips"][0].get("version").is_none());
        assert!(json["interfaces"][1].get("mtu").is_none());
        let json = sample().to_json(Version::V1_1_0);
        assert_eq!(json["interfaces"][1]["mtu"], 1400);
        assert_eq!(json["routes"][0]["mtu"], 1300);
        assert_eq!(json["ips"][0]["address"], "10.22.0.5/16");
    }

    #[test]
    fn refuses_results_it_cannot_read() {
        let no_version = serde_json::json!({"ips": []});
        assert!(CniResult::from_json(&no_version).is_err());
        let bad_index = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        assert!(CniResult::from_json(&bad_index).unwrap_err().msg.contains("interface index 3"));
    }
}
