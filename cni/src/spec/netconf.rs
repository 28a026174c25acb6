//! Network configuration: a plugin's stdin ([`NetConf`]) and the list a runtime loads from
//! `/etc/cni/net.d` ([`NetConfList`]), validated in one pass with errors naming the field.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{Error, ErrorCode};
use super::result::{CniResult, Dns};
use super::version::{SUPPORTED_VERSIONS, Version};

/// One plugin's configuration as it reads it on stdin. Plugin-specific fields are read from
/// [`NetConf::raw`] with [`NetConf::fields`].
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: Version,
    pub name: String,
    pub plugin_type: String,
    /// The `ipam` section, with its `type`, passed whole to the IPAM plugin.
    pub ipam: Option<serde_json::Value>,
    pub dns: Option<Dns>,
    pub runtime_config: RuntimeConfig,
    /// The previous plugin's result in a chain (ADD) or the cached result (CHECK, DEL).
    pub prev_result: Option<CniResult>,
    /// GC only: the attachments still in use (`cni.dev/valid-attachments`).
    pub valid_attachments: Vec<ValidAttachment>,
    pub raw: serde_json::Value,
}

/// Capability arguments the runtime passes in `runtimeConfig`; those this crate uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// A hostPort mapping (the `portMappings` capability), as kubelets and CRI runtimes send it.
/// containerd (1.6, through go-cni) sends Go's field names, `{"HostPort":8080,
/// "ContainerPort":80,"Protocol":"tcp","HostIP":""}`: the reference portmap takes them, as
/// Go's JSON decoding ignores case, so we take those names too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(alias = "HostPort")]
    pub host_port: u16,
    #[serde(alias = "ContainerPort")]
    pub container_port: u16,
    #[serde(default = "default_protocol", alias = "Protocol")]
    pub protocol: String,
    #[serde(default, rename = "hostIP", alias = "HostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Common {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    plugin_type: String,
    #[serde(default)]
    ipam: Option<serde_json::Value>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    runtime_config: Option<serde_json::Value>,
    #[serde(default)]
    prev_result: Option<serde_json::Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Vec<ValidAttachment>,
}

impl NetConf {
    /// Parses and validates a plugin's stdin.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let raw: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode(format!("network configuration is not valid JSON: {e}")))?;
        if !raw.is_object() {
            return Err(Error::decode("network configuration must be a JSON object"));
        }
        let common: Common = decode_fields(&raw)?;
        let cni_version = Version::parse(&common.cni_version)?;
        validate_name(&common.name)?;
        if common.plugin_type.is_empty() {
            return Err(Error::invalid_config("network configuration has no \"type\""));
        }
        if let Some(ipam) = &common.ipam
            && ipam.get("type").and_then(|t| t.as_str()).is_none_or(str::is_empty) {
                return Err(Error::invalid_config("\"ipam\" has no \"type\""));
            }
        let runtime_config = match common.runtime_config {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| Error::invalid_config(format!("invalid \"runtimeConfig\": {e}")))?,
            None => RuntimeConfig::default(),
        };
        let prev_result = match common.prev_result {
            Some(v) if !v.is_null() => {
                // A prevResult is in the version of the configuration it came with.
                let mut v = v;
                if v.get("cniVersion").is_none() {
                    v["cniVersion"] = cni_version.as_str().into();
                }
                Some(CniResult::from_json(&v)?.1)
            }
            _ => None,
        };
        Ok(NetConf {
            cni_version,
            name: common.name,
            plugin_type: common.plugin_type,
            ipam: common.ipam,
            dns: common.dns,
            runtime_config,
            prev_result,
            valid_attachments: common.valid_attachments,
            raw,
        })
    }

    /// The plugin's own fields, decoded into `T`; an error names the field.
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode_fields(&self.raw)
    }

    /// The `type` of the IPAM plugin, if the configuration has an `ipam` section.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }
}

fn decode_fields<T: DeserializeOwned>(raw: &serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid_config(format!("invalid network configuration at {path:?}: {}", e.inner()))
    })
}

/// Network names: the spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (they become directory names).
fn validate_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err(Error::invalid_config("network configuration has no \"name\""))
    } else {
        Err(Error::invalid_config(format!(
            "invalid network name {name:?}: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        )))
    }
}

/// A network configuration list (`.conflist`), as a runtime loads it.
#[derive(Debug, Clone)]
pub struct NetConfList {
    /// The version plugins are called with: the highest of `cniVersions` this crate
    /// supports, else `cniVersion`.
    pub cni_version: Version,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's configuration as written, without the list's name and version.
    pub plugins: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListWire {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    cni_versions: Vec<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    disable_check: bool,
    #[serde(default, rename = "disableGC")]
    disable_gc: bool,
    #[serde(default)]
    plugins: Vec<serde_json::Value>,
}

impl NetConfList {
    /// Parses a `.conflist`; a single-plugin `.conf` is accepted too and becomes a list of one.
    pub fn parse(bytes: &[u8]) -> Result<NetConfList, Error> {
        let raw: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode(format!("network configuration list is not valid JSON: {e}")))?;
        if !raw.is_object() {
            return Err(Error::decode("network configuration list must be a JSON object"));
        }
        let wire: ListWire = decode_fields(&raw)?;
        validate_name(&wire.name)?;
        let plugins = if raw.get("plugins").is_some() {
            wire.plugins
        } else if raw.get("type").is_some() {
            let mut single = raw.clone();
            let obj = single.as_object_mut().expect("checked object");
            obj.remove("cniVersion");
            obj.remove("name");
            vec![single]
        } else {
            Vec::new()
        };
        if plugins.is_empty() {
            return Err(Error::invalid_config(format!("network {:?} has no plugins", wire.name)));
        }
        for (i, p) in plugins.iter().enumerate() {
            if p.get("type").and_then(|t| t.as_str()).is_none_or(str::is_empty) {
                return Err(Error::invalid_config(format!("network {:?}: plugins[{i}] has no \"type\"", wire.name)));
            }
        }
        let cni_version = if wire.cni_versions.is_empty() {
            Version::parse(&wire.cni_version)?
        } else {
            let best = wire.cni_versions.iter().filter_map(|v| Version::parse(v).ok()).max();
            best.ok_or_else(|| {
                Error::new(
                    ErrorCode::IncompatibleVersion,
                    format!("network {:?}: none of cniVersions {:?} is supported ({SUPPORTED_VERSIONS:?})", wire.name, wire.cni_versions),
                )
            })?
        };
        Ok(NetConfList { cni_version, name: wire.name, disable_check: wire.disable_check, disable_gc: wire.disable_gc, plugins })
    }

    /// The stdin for plugin `index`: its configuration with the list's `name` and
    /// `cniVersion`, the `runtimeConfig` entries for the capabilities it declares, and
    /// `prevResult` when given (spec: "Deriving execution configuration").
    pub fn plugin_stdin(
        &self,
        index: usize,
        capability_args: &BTreeMap<String, serde_json::Value>,
        prev_result: Option<&CniResult>,
    ) -> serde_json::Value {
        let mut conf = self.plugins[index].clone();
        let obj = conf.as_object_mut().expect("plugins are objects (checked in parse)");
        obj.insert("cniVersion".into(), self.cni_version.as_str().into());
        obj.insert("name".into(), self.name.clone().into());
        let declared: Vec<String> = obj
            .get("capabilities")
            .and_then(|c| c.as_object())
            .map(|c| c.iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        let runtime: serde_json::Map<String, serde_json::Value> = capability_args
            .iter()
            .filter(|(k, _)| declared.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !runtime.is_empty() {
            obj.insert("runtimeConfig".into(), serde_json::Value::Object(runtime));
        }
        if let Some(prev) = prev_result {
            let mut prev = prev.to_json(self.cni_version);
            prev.as_object_mut().expect("object").remove("cniVersion");
            obj.insert("prevResult".into(), prev);
        }
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plugin_config_with_prev_result_and_port_mappings() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"krs","type":"krs-portmap",
                "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]},
                "prevResult":{"ips":[{"address":"10.22.0.2/16"}]}}"#,
        )
        .unwrap();
        assert_eq!(conf.cni_version, Version::V1_0_0);
        assert_eq!(conf.runtime_config.port_mappings[0].protocol, "tcp");
        assert_eq!(conf.prev_result.unwrap().ips[0].address.to_string(), "10.22.0.2/16");
    }

    #[test]
    fn takes_port_mappings_with_containerds_go_field_names() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"krs","type":"krs-portmap",
                "runtimeConfig":{"portMappings":[{"HostPort":35933,"ContainerPort":80,"Protocol":"tcp","HostIP":""},
                                                 {"HostPort":53,"ContainerPort":5353,"Protocol":"udp","HostIP":"127.0.0.1"}]}}"#,
        )
        .unwrap();
        let pm = &conf.runtime_config.port_mappings;
        assert_eq!((pm[0].host_port, pm[0].container_port, pm[0].protocol.as_str(), pm[0].host_ip.as_str()), (35933, 80, "tcp", ""));
        assert_eq!((pm[1].host_port, pm[1].container_port, pm[1].protocol.as_str(), pm[1].host_ip.as_str()), (53, 5353, "udp", "127.0.0.1"));
    }

    #[test]
    fn bad_configs_get_spec_codes_naming_what_is_wrong() {
        let cases: [(&[u8], ErrorCode, &str); 6] = [
            (b"{", ErrorCode::Decode, "not valid JSON"),
            (br#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#, ErrorCode::IncompatibleVersion, "9.9.9"),
            (br#"{"cniVersion":"1.0.0","type":"t"}"#, ErrorCode::InvalidNetworkConfig, "no \"name\""),
            (br#"{"cniVersion":"1.0.0","name":"../x","type":"t"}"#, ErrorCode::InvalidNetworkConfig, "invalid network name"),
            (br#"{"cniVersion":"1.0.0","name":"n"}"#, ErrorCode::InvalidNetworkConfig, "no \"type\""),
            (br#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{}}"#, ErrorCode::InvalidNetworkConfig, "ipam"),
        ];
        for (input, code, needle) in cases {
            let err = NetConf::parse(input).unwrap_err();
            assert_eq!(err.code, code, "{}", String::from_utf8_lossy(input));
            assert!(err.msg.contains(needle), "{:?} lacks {needle:?}", err.msg);
        }
        let err = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"portMappings":[{"hostPort":"x"}]}}"#)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
    }

    #[test]
    fn fields_error_names_the_path() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Bridge {
            mtu: Option<u32>,
        }
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"big"}"#).unwrap();
        let err = conf.fields::<Bridge>().unwrap_err();
        assert!(err.msg.contains("mtu"), "{}", err.msg);
    }

    #[test]
    fn list_picks_highest_supported_version_and_derives_plugin_stdin() {
        let list = NetConfList::parse(
            br#"{"cniVersion":"1.0.0","cniVersions":["0.3.1","1.0.0","1.1.0","2.0.0"],"name":"krs","plugins":[
                {"type":"krs-bridge","bridge":"krs0"},
                {"type":"krs-portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        assert_eq!(list.cni_version, Version::V1_1_0);
        let mut caps = BTreeMap::new();
        caps.insert("portMappings".to_string(), serde_json::json!([{"hostPort": 1, "containerPort": 2}]));
        caps.insert("bandwidth".to_string(), serde_json::json!({}));
        let first = list.plugin_stdin(0, &caps, None);
        assert_eq!(first["name"], "krs");
        assert_eq!(first["cniVersion"], "1.1.0");
        assert!(first.get("runtimeConfig").is_none(), "bridge declares no capabilities");
        let prev = CniResult::default();
        let second = list.plugin_stdin(1, &caps, Some(&prev));
        assert!(second["runtimeConfig"].get("portMappings").is_some());
        assert!(second["runtimeConfig"].get("bandwidth").is_none());
        assert!(second.get("prevResult").is_some());
    }

    #[test]
    fn list_errors() {
        assert!(NetConfList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#).unwrap_err().msg.contains("no plugins"));
        assert!(NetConfList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{}]}"#).unwrap_err().msg.contains("plugins[0]"));
        let single = NetConfList::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"krs-bridge"}"#).unwrap();
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(
            NetConfList::parse(br#"{"cniVersions":["0.1.0"],"name":"n","type":"x"}"#).unwrap_err().code,
            ErrorCode::IncompatibleVersion
        );
    }
}
