//! One attachment of a container to a network (spec: "Attachment Parameters"): what every
//! plugin of the list is called with besides its configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Error;
use crate::spec;

/// The interface name kubelets give the pod's network (dockershim, containerd and CRI-O alike).
pub const POD_IFNAME: &str = "eth0";

#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub container_id: String,
    /// The sandbox's network namespace; empty when it is gone (DEL only).
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS`, in order.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `bandwidth`, ...); each plugin gets in its
    /// `runtimeConfig` only those it declares in `capabilities`.
    pub capability_args: BTreeMap<String, serde_json::Value>,
}

impl Attachment {
    /// A pod sandbox's attachment with the `CNI_ARGS` kubelets pass: `IgnoreUnknown=1` first
    /// so plugins that do not know the Kubernetes keys accept them.
    pub fn for_pod(namespace: &str, name: &str, uid: &str, sandbox_id: &str, netns: impl Into<PathBuf>) -> Attachment {
        let args = [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", namespace),
            ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
            ("K8S_POD_UID", uid),
        ];
        Attachment {
            container_id: sandbox_id.to_string(),
            netns: netns.into(),
            ifname: POD_IFNAME.to_string(),
            args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            capability_args: BTreeMap::new(),
        }
    }

    /// Adds a capability argument (e.g. `portMappings` with the pod's hostPorts).
    pub fn with_capability(mut self, key: &str, value: serde_json::Value) -> Attachment {
        self.capability_args.insert(key.to_string(), value);
        self
    }

    /// The container id and interface name name the cache file, so they are checked as a
    /// plugin would check them before anything runs.
    pub(super) fn validate(&self, network: &str) -> Result<(), Error> {
        let invalid = |source| Error::InvalidAttachment { network: network.to_string(), source };
        spec::validate_container_id(&self.container_id).map_err(invalid)?;
        spec::validate_ifname(&self.ifname).map_err(invalid)?;
        if let Some((k, _)) = self.args.iter().find(|(k, v)| k.is_empty() || k.contains(['=', ';']) || v.contains(';')) {
            return Err(invalid(spec::Error::new(spec::ErrorCode::InvalidEnvironment, format!("invalid CNI_ARGS key or value for {k:?}"))));
        }
        Ok(())
    }

    /// ADD and CHECK act inside the namespace, so unlike DEL they cannot do without it.
    pub(super) fn require_netns(&self, network: &str) -> Result<(), Error> {
        if self.netns().is_some() {
            return Ok(());
        }
        let msg = format!("container {:?} has no network namespace path", self.container_id);
        Err(Error::InvalidAttachment { network: network.to_string(), source: spec::Error::new(spec::ErrorCode::InvalidEnvironment, msg) })
    }

    /// `CNI_NETNS`, absent when the namespace is not known.
    pub(super) fn netns(&self) -> Option<&std::path::Path> {
        (!self.netns.as_os_str().is_empty()).then_some(self.netns.as_path())
    }

    pub(super) fn matches(&self, v: &spec::ValidAttachment) -> bool {
        self.container_id == v.container_id && self.ifname == v.ifname
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_attachment_carries_kubernetes_args_and_is_validated() {
        let a = Attachment::for_pod("default", "web", "u-1", "abc123", "/var/run/netns/x");
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.args[0], ("IgnoreUnknown".to_string(), "1".to_string()));
        assert!(a.args.contains(&("K8S_POD_INFRA_CONTAINER_ID".to_string(), "abc123".to_string())));
        assert!(a.validate("n").is_ok());
        let bad = Attachment { container_id: "../x".into(), ..a.clone() };
        assert!(bad.validate("n").unwrap_err().to_string().contains("CNI_CONTAINERID"));
        let bad = Attachment { args: vec![("K".into(), "a;b".into())], ..a };
        assert!(bad.validate("n").is_err());
    }
}
