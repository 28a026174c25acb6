//! The host-local configuration: the `ipam` section of the network configuration (the whole
//! plugin configuration is on stdin, `ipam` inside), plus requested addresses from `CNI_ARGS`
//! (`IP=`), `args.cni.ips` and the `ips` / `ipRanges` capabilities. Validated in one pass
//! before anything touches the disk; every problem is reported, each naming its field.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use super::error::IpamError;
use super::range::{Range, RangeSet, canonical, from_u128, to_u128};
use crate::spec::{NetConf, Route};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// The network name: the store's directory under `data_dir`.
    pub network: String,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Specific addresses asked for, each to be taken from the range set that holds it.
    pub requested: Vec<IpAddr>,
}

/// One range as written; strings so that a bad value is reported with its field name.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeWire {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpamWire {
    #[serde(default)]
    ranges: Vec<Vec<RangeWire>>,
    /// The deprecated single range, written directly in `ipam`.
    #[serde(flatten)]
    legacy: RangeWire,
    #[serde(default)]
    routes: Vec<Route>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeWire {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    ip_ranges: Vec<Vec<RangeWire>>,
}

impl IpamConfig {
    pub fn parse(conf: &NetConf, cni_args: &[(String, String)]) -> Result<IpamConfig, IpamError> {
        let ipam = conf.raw.get("ipam").ok_or_else(|| one("ipam: missing: host-local reads its ranges from the \"ipam\" section"))?;
        let wire: IpamWire = decode("ipam", ipam)?;
        let runtime: RuntimeWire = match conf.raw.get("runtimeConfig") {
            Some(v) => decode("runtimeConfig", v)?,
            None => RuntimeWire::default(),
        };
        let mut errors = Vec::new();

        // Order as the reference: capability ranges, then the legacy range, then `ranges`.
        let mut sets: Vec<(String, Vec<RangeWire>)> = Vec::new();
        for (i, set) in runtime.ip_ranges.into_iter().enumerate() {
            sets.push((format!("runtimeConfig.ipRanges[{i}]"), set));
        }
        let legacy = wire.legacy;
        if legacy.subnet.is_some() {
            sets.push(("ipam".into(), vec![legacy]));
        } else if legacy.range_start.is_some() || legacy.range_end.is_some() || legacy.gateway.is_some() {
            errors.push("ipam.subnet: missing, but rangeStart, rangeEnd or gateway is set".into());
        }
        for (i, set) in wire.ranges.into_iter().enumerate() {
            sets.push((format!("ipam.ranges[{i}]"), set));
        }
        if sets.is_empty() && errors.is_empty() {
            errors.push("ipam.ranges: missing: give \"ranges\" or a \"subnet\"".into());
        }
        let ranges = validate_sets(sets, &mut errors);

        let mut requested = Vec::new();
        for (key, value) in cni_args.iter().filter(|(k, _)| k.eq_ignore_ascii_case("ip")) {
            requested.push(parse_ip(value).ok_or_else(|| IpamError::InvalidArgs { key: key.clone(), value: value.clone() })?);
        }
        let arg_ips = conf.raw.pointer("/args/cni/ips").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        for (i, v) in arg_ips.iter().enumerate() {
            match v.as_str().and_then(parse_ip) {
                Some(ip) => requested.push(ip),
                None => errors.push(format!("args.cni.ips[{i}]: {v} is not an IP address")),
            }
        }
        for (i, v) in runtime.ips.iter().enumerate() {
            match parse_ip(v) {
                Some(ip) => requested.push(ip),
                None => errors.push(format!("runtimeConfig.ips[{i}]: {v:?} is not an IP address")),
            }
        }
        if !errors.is_empty() {
            return Err(IpamError::InvalidConfig(errors));
        }
        Ok(IpamConfig {
            network: conf.name.clone(),
            ranges,
            routes: wire.routes,
            data_dir: PathBuf::from(wire.data_dir.filter(|d| !d.is_empty()).unwrap_or_else(|| DEFAULT_DATA_DIR.into())),
            resolv_conf: wire.resolv_conf.filter(|p| !p.is_empty()).map(PathBuf::from),
            requested,
        })
    }
}

fn one(msg: &str) -> IpamError {
    IpamError::InvalidConfig(vec![msg.to_string()])
}

fn decode<T: serde::de::DeserializeOwned>(prefix: &str, v: &serde_json::Value) -> Result<T, IpamError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { prefix.to_string() } else { format!("{prefix}.{path}") };
        IpamError::InvalidConfig(vec![format!("{field}: {}", e.inner())])
    })
}

/// An address as `10.0.0.5` or, as the `ips` capability writes it, `10.0.0.5/24`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let addr = s.split_once('/').map_or(s, |(a, _)| a);
    addr.trim().parse().ok().map(canonical)
}

fn validate_sets(sets: Vec<(String, Vec<RangeWire>)>, errors: &mut Vec<String>) -> Vec<RangeSet> {
    let mut out = Vec::new();
    let mut all: Vec<(String, Range)> = Vec::new();
    for (label, set) in sets {
        if set.is_empty() {
            errors.push(format!("{label}: empty range set"));
            continue;
        }
        let mut ranges = Vec::new();
        for (j, wire) in set.iter().enumerate() {
            let field = if label == "ipam" { label.clone() } else { format!("{label}[{j}]") };
            if let Some(r) = validate_range(&field, wire, errors) {
                if let Some(first) = ranges.first().map(Range::is_v4).filter(|v4| *v4 != r.is_v4()) {
                    let fam = if first { "IPv4" } else { "IPv6" };
                    errors.push(format!("{field}.subnet: {} mixes address families in a range set of {fam}", r.subnet));
                    continue;
                }
                for (other_label, other) in &all {
                    if other.overlaps(&r) {
                        errors.push(format!("{field}: range {r} overlaps {other_label} ({other})"));
                    }
                }
                all.push((field, r.clone()));
                ranges.push(r);
            }
        }
        out.push(ranges);
    }
    out
}

fn validate_range(field: &str, wire: &RangeWire, errors: &mut Vec<String>) -> Option<Range> {
    let Some(subnet_s) = &wire.subnet else {
        errors.push(format!("{field}.subnet: missing"));
        return None;
    };
    let Ok(subnet) = subnet_s.parse::<IpNet>() else {
        errors.push(format!("{field}.subnet: {subnet_s:?} is not a CIDR subnet"));
        return None;
    };
    let subnet = subnet.trunc();
    // Network and broadcast are never handed out, so a /31 or /32 has nothing to give.
    if subnet.max_prefix_len() - subnet.prefix_len() < 2 {
        errors.push(format!("{field}.subnet: {subnet} is too small to allocate from"));
        return None;
    }
    let v4 = subnet.addr().is_ipv4();
    let first = from_u128(to_u128(subnet.network()) + 1, v4);
    // IPv6 has no broadcast address: its last address is usable, as in the reference.
    let last = if v4 { from_u128(to_u128(subnet.broadcast()) - 1, v4) } else { subnet.broadcast() };
    let before = errors.len();
    let mut ip = |name: &str, value: &Option<String>, default: IpAddr, usable_only: bool| -> IpAddr {
        let Some(s) = value else { return default };
        let Ok(ip) = s.trim().parse::<IpAddr>().map(canonical) else {
            errors.push(format!("{field}.{name}: {s:?} is not an IP address"));
            return default;
        };
        let usable = (to_u128(first)..=to_u128(last)).contains(&to_u128(ip));
        if ip.is_ipv4() != v4 || !subnet.contains(&ip) {
            errors.push(format!("{field}.{name}: {ip} is outside subnet {subnet}"));
        } else if usable_only && !usable {
            errors.push(format!("{field}.{name}: {ip} is the network or broadcast address of {subnet}"));
        }
        ip
    };
    let gateway = ip("gateway", &wire.gateway, first, false);
    let start = ip("rangeStart", &wire.range_start, first, true);
    let end = ip("rangeEnd", &wire.range_end, last, true);
    if errors.len() > before {
        return None;
    }
    if to_u128(start) > to_u128(end) {
        errors.push(format!("{field}.rangeStart: {start} is after rangeEnd {end}"));
        return None;
    }
    Some(Range { subnet, start, end, gateway })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(ipam: serde_json::Value) -> NetConf {
        let raw = serde_json::json!({"cniVersion": "1.0.0", "name": "net1", "type": "krs-bridge", "ipam": ipam});
        NetConf::parse(raw.to_string().as_bytes()).unwrap()
    }

    fn errors(ipam: serde_json::Value) -> Vec<String> {
        match IpamConfig::parse(&conf(ipam), &[]).unwrap_err() {
            IpamError::InvalidConfig(e) => e,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn defaults_from_a_legacy_subnet() {
        let c = IpamConfig::parse(&conf(serde_json::json!({"type": "host-local", "subnet": "10.1.2.3/24"})), &[]).unwrap();
        let r = &c.ranges[0][0];
        assert_eq!(r.subnet.to_string(), "10.1.2.0/24");
        assert_eq!((r.start.to_string(), r.end.to_string(), r.gateway.to_string()), ("10.1.2.1".into(), "10.1.2.254".into(), "10.1.2.1".into()));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.network, "net1");
        let c = IpamConfig::parse(&conf(serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "fd00::/120"}]]})), &[]).unwrap();
        assert_eq!(c.ranges[0][0].end.to_string(), "fd00::ff");
    }

    #[test]
    fn legacy_range_comes_before_ranges_and_requested_ips_are_read() {
        let mut nc = conf(serde_json::json!({"type": "host-local", "subnet": "10.0.0.0/24",
            "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/x", "resolvConf": "/etc/resolv.conf"}));
        nc.raw["runtimeConfig"] = serde_json::json!({"ips": ["10.1.0.15/24"]});
        let c = IpamConfig::parse(&nc, &[("IgnoreUnknown".into(), "1".into()), ("IP".into(), "10.0.0.9".into())]).unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.ranges[1][0].gateway.to_string(), "10.1.0.254");
        assert_eq!(c.requested, vec!["10.0.0.9".parse::<IpAddr>().unwrap(), "10.1.0.15".parse().unwrap()]);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let err = IpamConfig::parse(&nc, &[("IP".into(), "nope".into())]).unwrap_err();
        assert!(matches!(err, IpamError::InvalidArgs { .. }), "{err}");
    }

    #[test]
    fn every_problem_is_reported_naming_its_field() {
        let e = errors(serde_json::json!({"type": "host-local", "ranges": [
            [{"subnet": "10.0.0.0/33"}],
            [{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.5"}],
            [{"subnet": "10.3.0.0/24", "gateway": "10.4.0.1"}],
            [{"subnet": "10.5.0.0/24"}, {"subnet": "10.5.0.0/25"}],
            [{"subnet": "10.6.0.0/31"}],
            [{"subnet": "10.7.0.0/24", "rangeStart": "10.7.0.50", "rangeEnd": "10.7.0.10"}],
            [{"subnet": "10.8.0.0/24", "rangeEnd": "10.8.0.255"}],
            [],
            [{"rangeStart": "10.9.0.1"}]]}));
        let expect = [
            "ipam.ranges[0][0].subnet: \"10.0.0.0/33\" is not a CIDR",
            "ipam.ranges[1][0].rangeStart: 10.2.0.5 is outside subnet 10.1.0.0/24",
            "ipam.ranges[2][0].gateway: 10.4.0.1 is outside subnet",
            "ipam.ranges[3][1]: range 10.5.0.1-10.5.0.126 overlaps ipam.ranges[3][0]",
            "ipam.ranges[4][0].subnet: 10.6.0.0/31 is too small",
            "ipam.ranges[5][0].rangeStart: 10.7.0.50 is after rangeEnd",
            "ipam.ranges[6][0].rangeEnd: 10.8.0.255 is the network or broadcast",
            "ipam.ranges[7]: empty range set",
            "ipam.ranges[8][0].subnet: missing",
        ];
        assert_eq!(e.len(), expect.len(), "{e:#?}");
        for (got, want) in e.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} does not start with {want:?}");
        }
        assert!(errors(serde_json::json!({"type": "host-local"}))[0].starts_with("ipam.ranges: missing"));
        assert!(errors(serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}))[0]
            .contains("mixes address families"));
        assert!(errors(serde_json::json!({"type": "host-local", "subnet": 5}))[0].starts_with("ipam"));
        assert!(errors(serde_json::json!({"type": "host-local", "ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.128/25"}]]}))[0]
            .contains("overlaps ipam.ranges[0][0]"));
    }
}
