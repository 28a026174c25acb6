//! The container's configuration after validation: what the rest of the runtime acts on.
//!
//! `config.json` is parsed with oci-spec and checked in one pass (`validate.rs`); the result
//! is this typed form, so the code that builds the container never re-parses strings.

use std::path::PathBuf;

use caps::CapsHashSet;
use nix::mount::MsFlags;
use nix::sys::resource::Resource;
use oci_spec::runtime::Spec;

use crate::cgroups::devices::DeviceRule;
use crate::namespaces::Namespaces;
use crate::rootfs::options::MountOptions;

#[derive(Debug, Clone)]
pub struct Config {
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// `root.path`, absolute.
    pub rootfs: PathBuf,
    pub root_readonly: bool,
    /// The spec as given, kept for hooks, annotations and `state`.
    pub spec: Spec,
    pub namespaces: Namespaces,
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    pub mounts: Vec<MountEntry>,
    pub devices: Vec<Device>,
    /// The device cgroup rules, in order: `linux.resources.devices`, then the devices every
    /// container may use, then those of `devices` (see `cgroups::devices::container_rules`).
    pub device_rules: Vec<DeviceRule>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// `(key, value)` with the key as written (`net.ipv4.ip_forward`).
    pub sysctls: Vec<(String, String)>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    /// `linux.rootfsPropagation`, if set.
    pub rootfs_propagation: Option<MsFlags>,
    pub cgroups_path: Option<PathBuf>,
    /// `linux.resources` in cgroup v2 terms (devices excepted).
    pub resources: crate::cgroups::Resources,
    /// Lines for `/proc/self/timens_offsets`: `(clock, seconds, nanoseconds)`.
    pub time_offsets: Vec<(String, i64, u32)>,
    /// `linux.seccomp`, resolved; compiled when a process is launched.
    pub seccomp: Option<crate::seccomp::Profile>,
    pub process: Option<ProcessConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// The host id that container id `id` maps to; `None` when no mapping covers it.
pub fn host_id(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container_id && id - m.container_id < m.size)
        .map(|m| m.host_id + (id - m.container_id))
}

impl Config {
    /// The host uid and gid of the container's root: 0 without a new user namespace, else
    /// what the mappings make of 0 (the runtime's own ids when they do not map it).
    pub fn host_root_ids(&self) -> (u32, u32) {
        if !self.namespaces.is_new(crate::namespaces::NsType::User) {
            return (0, 0);
        }
        let own = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        (host_id(&self.uid_mappings, 0).unwrap_or(own.0), host_id(&self.gid_mappings, 0).unwrap_or(own.1))
    }
}

/// Render id mappings as `/proc/<pid>/uid_map` wants them.
pub fn id_map_lines(maps: &[IdMap]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Filesystem type; `None` for a bind mount given only by its options.
    pub typ: Option<String>,
    /// For bind mounts an absolute host path (relative ones are taken from the bundle).
    pub source: Option<PathBuf>,
    pub options: MountOptions,
}

impl MountEntry {
    pub fn is_bind(&self) -> bool {
        self.options.bind || self.typ.as_deref() == Some("bind")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The process to run: the container's own (`process` in config.json) or one given to `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub terminal: bool,
    /// `(rows, columns)`.
    pub console_size: Option<(u16, u16)>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

impl ProcessConfig {
    /// The value of an environment variable, as the process will see it.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_follows_the_mapping_ranges() {
        let maps = [IdMap { container_id: 0, host_id: 100000, size: 1000 }, IdMap { container_id: 1000, host_id: 5000, size: 10 }];
        assert_eq!(host_id(&maps, 0), Some(100000));
        assert_eq!(host_id(&maps, 999), Some(100999));
        assert_eq!(host_id(&maps, 1001), Some(5001));
        assert_eq!(host_id(&maps, 1010), None);
        assert_eq!(host_id(&[], 0), None);
    }
}
