//! The bridge plugin's configuration: the fields users know from the reference bridge
//! plugin, validated in one pass. Fields of the reference plugin this one does not implement
//! are refused with code 2 when set, rather than silently ignored.

use serde::Deserialize;

use crate::spec::{Error, ErrorCode, NetConf};

pub const DEFAULT_BRIDGE: &str = "cni0";
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConf {
    pub bridge: String,
    /// Give the bridge the gateway address of each pod subnet (and turn on forwarding).
    pub is_gateway: bool,
    /// Also route the pod's default route through the bridge (implies `is_gateway`).
    pub is_default_gateway: bool,
    pub ip_masq: bool,
    /// `nftables`, `iptables` or `None` for the first that works.
    pub ip_masq_backend: Option<String>,
    pub mtu: u32,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    // Reference-plugin fields not implemented here; refused when set.
    #[serde(default)]
    vlan: Option<u32>,
    #[serde(default)]
    vlan_trunk: Option<serde_json::Value>,
    #[serde(default)]
    macspoofchk: bool,
    #[serde(default)]
    enabledad: bool,
    #[serde(default)]
    port_isolation: bool,
    #[serde(default)]
    disable_container_interface: bool,
}

impl BridgeConf {
    pub fn from_netconf(conf: &NetConf) -> Result<BridgeConf, Error> {
        let w: Wire = conf.fields()?;
        let unsupported = [
            ("vlan", w.vlan.is_some_and(|v| v != 0)),
            ("vlanTrunk", w.vlan_trunk.is_some()),
            ("macspoofchk", w.macspoofchk),
            ("enabledad", w.enabledad),
            ("portIsolation", w.port_isolation),
            ("disableContainerInterface", w.disable_container_interface),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(Error::new(ErrorCode::UnsupportedField, format!("bridge option {field:?} is not supported by krs-bridge")));
        }
        let bridge = w.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        crate::spec::validate_link_name(&bridge).map_err(|e| Error::invalid_config(format!("invalid \"bridge\": {}", e.msg)))?;
        let mtu = w.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(Error::invalid_config(format!("invalid \"mtu\" {mtu}: it must be between 68 and 65535")));
        }
        if let Some(b) = &w.ip_masq_backend
            && b != "nftables" && b != "iptables" {
                return Err(Error::invalid_config(format!("invalid \"ipMasqBackend\" {b:?}: expected \"nftables\" or \"iptables\"")));
            }
        Ok(BridgeConf {
            bridge,
            is_gateway: w.is_gateway || w.is_default_gateway,
            is_default_gateway: w.is_default_gateway,
            ip_masq: w.ip_masq,
            ip_masq_backend: w.ip_masq_backend,
            mtu,
            hairpin_mode: w.hairpin_mode,
            promisc_mode: w.promisc_mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<BridgeConf, Error> {
        let json = format!(r#"{{"cniVersion":"1.0.0","name":"krs","type":"krs-bridge"{extra}}}"#);
        BridgeConf::from_netconf(&NetConf::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn defaults_and_implications() {
        let c = parse("").unwrap();
        assert_eq!((c.bridge.as_str(), c.mtu, c.is_gateway), ("cni0", 1500, false));
        let c = parse(r#","isDefaultGateway":true,"bridge":"krs0","mtu":1400,"hairpinMode":true"#).unwrap();
        assert!(c.is_gateway && c.is_default_gateway && c.hairpin_mode);
        assert_eq!((c.bridge.as_str(), c.mtu), ("krs0", 1400));
    }

    #[test]
    fn refuses_bad_and_unsupported_fields() {
        for (extra, code, needle) in [
            (r#","mtu":10"#, ErrorCode::InvalidNetworkConfig, "mtu"),
            (r#","mtu":"x""#, ErrorCode::InvalidNetworkConfig, "mtu"),
            (r#","bridge":"a-name-far-too-long""#, ErrorCode::InvalidNetworkConfig, "bridge"),
            (r#","ipMasqBackend":"pf""#, ErrorCode::InvalidNetworkConfig, "ipMasqBackend"),
            (r#","vlan":5"#, ErrorCode::UnsupportedField, "vlan"),
        ] {
            let err = parse(extra).unwrap_err();
            assert_eq!(err.code, code, "{extra}");
            assert!(err.msg.contains(needle), "{}", err.msg);
        }
    }
}
