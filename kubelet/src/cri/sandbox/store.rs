//! The sandbox record: everything the service knows about one sandbox, kept as JSON in
//! `<root>/sandboxes/<id>/sandbox.json` (written atomically at every change) so a restarted
//! service finds its sandboxes; and its CRI views (status, list item, filter).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cri_api::runtime::v1 as cri;
use serde::{Deserialize, Serialize};

use super::namespaces::NamespacePaths;
use super::network::PodAttachment;
use super::pod_init::PodInit;

pub const RECORD_FILE: &str = "sandbox.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing sandbox record: {0}")]
    Write(#[source] super::files::Error),
    #[error("reading sandbox records in {}: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Ready,
    NotReady,
}

impl State {
    pub fn to_cri(self) -> cri::PodSandboxState {
        match self {
            State::Ready => cri::PodSandboxState::SandboxReady,
            State::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl Metadata {
    pub fn to_cri(&self) -> cri::PodSandboxMetadata {
        cri::PodSandboxMetadata { name: self.name.clone(), uid: self.uid.clone(), namespace: self.namespace.clone(), attempt: self.attempt }
    }
}

/// The CRI namespace modes the sandbox was created with (`cri::NamespaceMode` values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    pub network: i32,
    pub pid: i32,
    pub ipc: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    /// The reserved name (`<name>_<namespace>_<uid>_<attempt>`).
    pub name: String,
    pub metadata: Metadata,
    pub state: State,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub hostname: String,
    pub log_directory: String,
    pub runtime_handler: String,
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub sysctls: BTreeMap<String, String>,
    pub modes: Modes,
    pub namespaces: NamespacePaths,
    /// The pod's init, holding its pid namespace (`pid: POD`); `None` without one.
    #[serde(default)]
    pub init: Option<PodInit>,
    /// `<root>/sandboxes/<id>`: the record, `hostname`, `hosts`, `resolv.conf`.
    pub dir: PathBuf,
    /// `<state_dir>/sandboxes/<id>`: namespace files and `shm`.
    pub state_dir: PathBuf,
    /// The pod's `/dev/shm` tmpfs; `None` with the node's IPC namespace.
    pub shm: Option<PathBuf>,
    /// Set while the sandbox is attached to a network: its name and the ADD arguments.
    pub network: Option<String>,
    pub attachment: Option<PodAttachment>,
    /// The pod's addresses from ADD, kept after stop for status.
    pub ips: Vec<IpAddr>,
}

impl Sandbox {
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// True while its namespaces are held: every namespace file mounted, and the init of a
    /// shared pid namespace running (the recorded process, not a recycled pid).
    pub fn alive(&self) -> bool {
        self.namespaces.alive() && self.init.is_none_or(|i| i.alive()) && (self.namespaces.pid.is_none() || self.init.is_some())
    }

    pub fn host_network(&self) -> bool {
        self.modes.network == cri::NamespaceMode::Node as i32
    }

    /// Writes the record through a temporary file and a rename, so a crash leaves the old
    /// record or the new one, never half of one.
    pub fn save(&self) -> Result<(), Error> {
        let path = self.dir.join(RECORD_FILE);
        let body = serde_json::to_vec_pretty(self).expect("a sandbox record serializes");
        super::files::write_atomic(&path, &body).map_err(Error::Write)
    }

    /// `PodSandboxStatus` as the CRI reports it.
    pub fn to_status(&self) -> cri::PodSandboxStatus {
        let mut ips = self.ips.iter().map(|ip| ip.to_string());
        let network = (!self.host_network()).then(|| cri::PodSandboxNetworkStatus {
            ip: ips.next().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
        });
        let options = cri::NamespaceOption {
            network: self.modes.network,
            pid: self.modes.pid,
            ipc: self.modes.ipc,
            ..Default::default()
        };
        cri::PodSandboxStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata.to_cri()),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            network,
            linux: Some(cri::LinuxPodSandboxStatus { namespaces: Some(cri::Namespace { options: Some(options) }) }),
            labels: to_map(&self.labels),
            annotations: to_map(&self.annotations),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    /// The `ListPodSandbox` item.
    pub fn to_list_item(&self) -> cri::PodSandbox {
        cri::PodSandbox {
            id: self.id.clone(),
            metadata: Some(self.metadata.to_cri()),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            labels: to_map(&self.labels),
            annotations: to_map(&self.annotations),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    /// The filter's fields ANDed; the id matches as a prefix, as crictl passes short ids.
    pub fn matches(&self, filter: &cri::PodSandboxFilter) -> bool {
        (filter.id.is_empty() || self.id.starts_with(&filter.id))
            && filter.state.as_ref().is_none_or(|s| s.state == self.state.to_cri() as i32)
            && filter.label_selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

fn to_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Every readable record under `<root>/sandboxes`. Directories without a record (a run that
/// crashed before its first save) are returned apart, for cleanup; an unreadable record is
/// skipped with a warning rather than keeping the service from starting.
pub fn load_all(sandboxes_dir: &Path) -> Result<(Vec<Sandbox>, Vec<PathBuf>), Error> {
    let mut records = Vec::new();
    let mut orphans = Vec::new();
    let entries = match std::fs::read_dir(sandboxes_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((records, orphans)),
        Err(source) => return Err(Error::ReadDir { dir: sandboxes_dir.to_path_buf(), source }),
    };
    for entry in entries {
        let dir = entry.map_err(|source| Error::ReadDir { dir: sandboxes_dir.to_path_buf(), source })?.path();
        let path = dir.join(RECORD_FILE);
        match std::fs::read(&path) {
            Ok(body) => match serde_json::from_slice::<Sandbox>(&body) {
                Ok(sandbox) => records.push(sandbox),
                Err(e) => tracing::warn!(file = %path.display(), "skipping unreadable sandbox record: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => orphans.push(dir),
            Err(e) => tracing::warn!(file = %path.display(), "skipping unreadable sandbox record: {e}"),
        }
    }
    records.sort_by_key(|s| s.created_at);
    Ok((records, orphans))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(dir: &Path, id: &str) -> Sandbox {
        Sandbox {
            id: id.to_string(),
            name: format!("web_default_u-{id}_0"),
            metadata: Metadata { name: "web".into(), uid: format!("u-{id}"), namespace: "default".into(), attempt: 0 },
            state: State::Ready,
            created_at: 1_700_000_000_000_000_000,
            hostname: "web".into(),
            log_directory: "/var/log/pods/x".into(),
            runtime_handler: String::new(),
            cgroup_parent: "/kubepods".into(),
            labels: [("app".to_string(), "web".to_string()), ("tier".to_string(), "front".to_string())].into(),
            annotations: [("a".to_string(), "b".to_string())].into(),
            sysctls: BTreeMap::new(),
            modes: Modes { network: 0, pid: 1, ipc: 0 },
            namespaces: NamespacePaths { net: Some(dir.join("ns/net")), ipc: None, uts: None, pid: None },
            init: None,
            dir: dir.join(id),
            state_dir: dir.join("state").join(id),
            shm: None,
            network: Some("kubelet-rs".into()),
            attachment: None,
            ips: vec!["10.88.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        }
    }

    #[test]
    fn records_round_trip_and_orphan_dirs_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let a = sample(root.path(), "aaaa");
        std::fs::create_dir_all(&a.dir).unwrap();
        a.save().unwrap();
        std::fs::create_dir_all(root.path().join("bbbb")).unwrap();
        std::fs::create_dir_all(root.path().join("cccc")).unwrap();
        std::fs::write(root.path().join("cccc").join(RECORD_FILE), "{ torn").unwrap();
        let (records, orphans) = load_all(root.path()).unwrap();
        assert_eq!(records, vec![a]);
        assert_eq!(orphans, vec![root.path().join("bbbb")]);
        assert_eq!(load_all(&root.path().join("none")).unwrap().0, vec![]);
    }

    #[test]
    fn status_carries_ips_metadata_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample(dir.path(), "abcd");
        let st = s.to_status();
        let net = st.network.unwrap();
        assert_eq!(net.ip, "10.88.0.2");
        assert_eq!(net.additional_ips, vec![cri::PodIp { ip: "fd00::2".into() }]);
        assert_eq!(st.metadata.unwrap().uid, "u-abcd");
        assert_eq!(st.linux.unwrap().namespaces.unwrap().options.unwrap().pid, 1);
        assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(st.labels.len(), 2);
    }

    #[test]
    fn filters_and_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let s = sample(dir.path(), "abcd");
        let f = |id: &str, state: Option<cri::PodSandboxState>, labels: &[(&str, &str)]| cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
            label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert!(s.matches(&cri::PodSandboxFilter::default()));
        assert!(s.matches(&f("ab", Some(cri::PodSandboxState::SandboxReady), &[("app", "web")])));
        assert!(!s.matches(&f("x", None, &[])));
        assert!(!s.matches(&f("", Some(cri::PodSandboxState::SandboxNotready), &[])));
        assert!(!s.matches(&f("", None, &[("app", "db")])));
        assert!(!s.matches(&f("", None, &[("missing", "")])));
    }
}
