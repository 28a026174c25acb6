//! The pod network through `cni::runtime`: the first configuration list in the CNI
//! configuration directory (a default one for our bridge is written when the directory has
//! none), ADD at run with the pod's `CNI_ARGS` and host ports, DEL at stop.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cni::runtime::{Attachment, CniRuntime};
use cni::spec::NetConfList;
use cri_api::runtime::v1::{PortMapping, Protocol};
use serde::{Deserialize, Serialize};

use crate::cri::config::CriConfig;

/// Written when the configuration directory has no network, so a fresh node has pod
/// networking with our plugins alone.
pub const DEFAULT_CONFLIST: &str = "10-kubelet-rs.conflist";
pub const DEFAULT_NETWORK: &str = "kubelet-rs";
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("CNI configuration directory {}: {source}", dir.display())]
    ConfDir { dir: PathBuf, source: std::io::Error },
    #[error("writing the default network configuration: {0}")]
    WriteDefault(#[source] super::files::Error),
    #[error("loading the pod network: {0}")]
    Load(#[source] Box<cni::runtime::Error>),
    #[error("setting up the pod network for sandbox {sandbox:?}: {source}")]
    Add { sandbox: String, source: Box<cni::runtime::Error> },
    #[error("sandbox {sandbox}: bringing up its loopback interface: {source}")]
    Loopback { sandbox: String, source: cni::netlink::Error },
    #[error("tearing down the pod network for sandbox {sandbox:?}: {source}")]
    Del { sandbox: String, source: Box<cni::runtime::Error> },
    #[error("sandbox {sandbox:?} was attached to network {network:?}, which is no longer configured in {}", dir.display())]
    NetworkGone { sandbox: String, network: String, dir: PathBuf },
}

/// What ADD and DEL of one sandbox are called with; kept in the sandbox record so DEL after a
/// restart passes the same arguments (portmap finds its rules by them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodAttachment {
    pub sandbox_id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub netns: PathBuf,
    /// The `portMappings` capability argument.
    pub port_mappings: serde_json::Value,
}

impl PodAttachment {
    fn attachment(&self) -> Attachment {
        Attachment::for_pod(&self.namespace, &self.name, &self.uid, &self.sandbox_id, &self.netns)
            .with_capability("portMappings", self.port_mappings.clone())
    }
}

/// The `portMappings` capability argument: only mappings with a host port (the kubelet sends
/// every declared container port, most without one), protocol in lower case.
pub fn port_mappings(ports: &[PortMapping]) -> serde_json::Value {
    let ports: Vec<serde_json::Value> = ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = Protocol::try_from(p.protocol).unwrap_or(Protocol::Tcp).as_str_name().to_lowercase();
            let mut m = serde_json::json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol});
            if !p.host_ip.is_empty() {
                m["hostIP"] = p.host_ip.clone().into();
            }
            m
        })
        .collect();
    ports.into()
}

/// Our bridge with masquerade and hairpin, host-local addresses from [`DEFAULT_SUBNET`] kept
/// under the CNI cache directory (`/var/lib/cni/networks` by default, as the reference
/// host-local), and host ports.
pub fn default_conflist(cni_cache_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": DEFAULT_NETWORK,
        "plugins": [
            {
                "type": "krs-bridge",
                "bridge": "cni0",
                "isGateway": true,
                "isDefaultGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "krs-host-local",
                    "ranges": [[{"subnet": DEFAULT_SUBNET}]],
                    "dataDir": cni_cache_dir.join("networks"),
                },
            },
            {"type": "krs-portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

#[derive(Debug, Clone)]
pub struct PodNetwork {
    runtime: CniRuntime,
    conf_dir: PathBuf,
}

impl PodNetwork {
    /// Writes the default configuration list if the directory holds no valid network.
    pub fn new(config: &CriConfig) -> Result<PodNetwork, Error> {
        let dir = &config.cni_conf_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::ConfDir { dir: dir.clone(), source })?;
        if cni::runtime::default_network(dir).is_err() {
            let path = dir.join(DEFAULT_CONFLIST);
            let body = serde_json::to_vec_pretty(&default_conflist(&config.cni_cache_dir)).expect("json");
            super::files::write_atomic(&path, &body).map_err(Error::WriteDefault)?;
            tracing::info!(file = %path.display(), "wrote the default pod network configuration");
        }
        let runtime = CniRuntime::new(config.cni_bin_dirs.clone()).with_cache_dir(&config.cni_cache_dir);
        Ok(PodNetwork { runtime, conf_dir: dir.clone() })
    }

    /// The network a new sandbox is attached to: the first valid list in the directory, read
    /// at every run because the operator (or a network add-on) may have installed one since
    /// the service started.
    pub fn current(&self) -> Result<NetConfList, Error> {
        cni::runtime::default_network(&self.conf_dir).map_err(|e| Error::Load(Box::new(e)))
    }

    /// ADD: returns the pod's addresses. A failed ADD leaves nothing behind (the runtime DELs
    /// the chain), and the error names the plugin.
    pub fn attach(&self, list: &NetConfList, pod: &PodAttachment) -> Result<Vec<IpAddr>, Error> {
        loopback_up(&pod.attachment().netns).map_err(|source| Error::Loopback { sandbox: pod.sandbox_id.clone(), source })?;
        let result = self.runtime.add(list, &pod.attachment()).map_err(|source| Error::Add { sandbox: pod.sandbox_id.clone(), source: Box::new(source) })?;
        Ok(result.ips.iter().map(|ip| ip.address.addr()).collect())
    }

    /// DEL on the network the sandbox was attached to. Repeatable (plugins release what they
    /// still hold); a vanished netns is given as none, which DEL accepts.
    pub fn detach(&self, network: &str, pod: &PodAttachment) -> Result<(), Error> {
        let list = self.find(network).ok_or_else(|| Error::NetworkGone {
            sandbox: pod.sandbox_id.clone(),
            network: network.to_string(),
            dir: self.conf_dir.clone(),
        })?;
        let mut attachment = pod.attachment();
        if !super::mounts::is_namespace(&attachment.netns) {
            attachment.netns = PathBuf::new();
        }
        self.runtime.del(&list, &attachment).map_err(|source| Error::Del { sandbox: pod.sandbox_id.clone(), source: Box::new(source) })
    }

    fn find(&self, network: &str) -> Option<NetConfList> {
        cni::runtime::load_dir(&self.conf_dir).ok()?.into_iter().find(|l| l.name == network)
    }
}

/// The pod's `lo`, up: what containerd and CRI-O ask of the `loopback` plugin, done here
/// over netlink so a node needs no extra plugin. Containers of the pod reach each other on
/// 127.0.0.1 through it.
fn loopback_up(netns: &Path) -> Result<(), cni::netlink::Error> {
    use cni::netlink::{Netlink, Rtnl};
    let ns = Rtnl::in_netns(netns)?;
    let lo = ns.link("lo")?.ok_or_else(|| cni::netlink::Error::NoSuchLink("lo".into()))?;
    ns.set_up(lo.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_ports_are_mapped_with_lowercase_protocols() {
        let ports = [
            PortMapping { protocol: Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() },
            PortMapping { protocol: Protocol::Udp as i32, container_port: 53, host_port: 5353, host_ip: "127.0.0.1".into() },
            PortMapping { protocol: Protocol::Sctp as i32, container_port: 9, host_port: 0, host_ip: String::new() },
        ];
        assert_eq!(
            port_mappings(&ports),
            serde_json::json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ])
        );
    }

    #[test]
    fn the_default_network_is_written_once_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CriConfig::new(dir.path().join("root"), dir.path().join("state"));
        config.cni_conf_dir = dir.path().join("net.d");
        config.cni_cache_dir = dir.path().join("cache");
        PodNetwork::new(&config).unwrap();
        let list = cni::runtime::default_network(&config.cni_conf_dir).unwrap();
        assert_eq!(list.name, DEFAULT_NETWORK);
        assert_eq!(list.plugins[0]["ipam"]["dataDir"], serde_json::json!(dir.path().join("cache/networks")));
        assert_eq!(list.plugins[1]["capabilities"]["portMappings"], true);
        // An operator's network wins over ours, and ours is not written again next to it.
        std::fs::remove_file(config.cni_conf_dir.join(DEFAULT_CONFLIST)).unwrap();
        let own = r#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"bridge"}]}"#;
        std::fs::write(config.cni_conf_dir.join("05-mine.conflist"), own).unwrap();
        PodNetwork::new(&config).unwrap();
        assert!(!config.cni_conf_dir.join(DEFAULT_CONFLIST).exists());
    }
}
