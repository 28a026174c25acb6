//! One pass over a parsed spec: every problem is collected (not just the first), each naming
//! the field, and a valid spec comes out as a typed [`Config`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::CapsHashSet;
use nix::sys::resource::Resource;
use oci_spec::runtime::{
    Capabilities as OciCaps, LinuxDeviceType, PosixRlimitType, Process, Spec,
};

use super::config::*;
use crate::cgroups::devices::{container_rules, Access, DeviceRule, DeviceType};
use crate::namespaces::{Namespaces, NsType};
use crate::rootfs::options::{propagation_flags, MountOptions};

/// One thing wrong with a spec: the field (as a JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }
}

/// Check the structure of `spec` and convert it. Touches no file.
pub fn convert(bundle: &Path, spec: Spec) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();

    let (rootfs, root_readonly) = match spec.root() {
        None => {
            p.add("root", "is required: the container needs a root filesystem");
            (PathBuf::new(), false)
        }
        Some(root) if root.path().as_os_str().is_empty() => {
            p.add("root.path", "is required");
            (PathBuf::new(), false)
        }
        Some(root) => (bundle.join(root.path()), root.readonly().unwrap_or(false)),
    };

    let linux = spec.linux().clone();
    let namespaces = convert_namespaces(linux.as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default(), &mut p);

    let uid_mappings = convert_mappings(linux.as_ref().and_then(|l| l.uid_mappings().clone()));
    let gid_mappings = convert_mappings(linux.as_ref().and_then(|l| l.gid_mappings().clone()));
    if namespaces.is_new(NsType::User) {
        if uid_mappings.is_empty() {
            p.add("linux.uidMappings", "a new user namespace needs uid mappings");
        }
        if gid_mappings.is_empty() {
            p.add("linux.gidMappings", "a new user namespace needs gid mappings");
        }
    } else if !uid_mappings.is_empty() || !gid_mappings.is_empty() {
        p.add("linux.uidMappings", "id mappings are given but there is no new user namespace (linux.namespaces has no {\"type\": \"user\"})");
    }

    let mounts = convert_mounts(bundle, spec.mounts().as_deref().unwrap_or_default(), &namespaces, &mut p);
    let devices = convert_devices(linux.as_ref().and_then(|l| l.devices().clone()).unwrap_or_default(), &mut p);
    let own_rules = convert_device_rules(
        linux.as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().clone()).unwrap_or_default(),
        &mut p,
    );
    let device_rules = container_rules(own_rules, &devices);

    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some() && !namespaces.contains(NsType::Uts) {
        p.add("hostname", "setting the hostname needs a UTS namespace (add {\"type\": \"uts\"} to linux.namespaces)");
    }
    let domainname = spec.domainname().clone().filter(|h| !h.is_empty());
    if domainname.is_some() && !namespaces.contains(NsType::Uts) {
        p.add("domainname", "setting the domain name needs a UTS namespace (add {\"type\": \"uts\"} to linux.namespaces)");
    }

    let mut sysctls: Vec<(String, String)> = linux
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctls.sort();
    for (key, _) in &sysctls {
        if let Err(message) = check_sysctl(key, &namespaces) {
            p.add(format!("linux.sysctl.{key}"), message);
        }
    }

    let masked_paths = absolute_paths("linux.maskedPaths", linux.as_ref().and_then(|l| l.masked_paths().clone()), &mut p);
    let readonly_paths = absolute_paths("linux.readonlyPaths", linux.as_ref().and_then(|l| l.readonly_paths().clone()), &mut p);

    let rootfs_propagation = match linux.as_ref().and_then(|l| l.rootfs_propagation().clone()) {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => match propagation_flags(&s) {
            Some(f) => Some(f),
            None => {
                p.add("linux.rootfsPropagation", format!("unknown propagation {s:?}; use one of private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable"));
                None
            }
        },
    };

    let mut time_offsets = Vec::new();
    if let Some(offsets) = linux.as_ref().and_then(|l| l.time_offsets().clone()) {
        if !namespaces.is_new(NsType::Time) && !offsets.is_empty() {
            p.add("linux.timeOffsets", "time offsets need a new time namespace (add {\"type\": \"time\"} to linux.namespaces)");
        }
        for (clock, off) in offsets {
            if clock != "monotonic" && clock != "boottime" {
                p.add(format!("linux.timeOffsets.{clock}"), "unknown clock; use monotonic or boottime");
                continue;
            }
            let nanos = off.nanosecs().unwrap_or(0);
            if nanos >= 1_000_000_000 {
                p.add(format!("linux.timeOffsets.{clock}.nanosecs"), "must be below 1000000000");
            }
            time_offsets.push((clock, off.secs().unwrap_or(0), nanos));
        }
        time_offsets.sort();
    }

    if let Some(l) = &linux {
        if l.intel_rdt().is_some() {
            p.add("linux.intelRdt", "Intel RDT is not supported by runtime-rs");
        }
        if l.personality().is_some() {
            p.add("linux.personality", "personality is not supported by runtime-rs yet");
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            p.add("linux.netDevices", "moving network devices is not supported by runtime-rs yet");
        }
        if l.memory_policy().is_some() {
            p.add("linux.memoryPolicy", "memory policy is not supported by runtime-rs yet");
        }
        if l.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
            p.add("linux.mountLabel", "SELinux is not supported by runtime-rs");
        }
    }

    let process = match spec.process() {
        None => None,
        Some(proc_) => match convert_process(proc_, "process.") {
            Ok(c) => Some(c),
            Err(problems) => {
                p.0.extend(problems);
                None
            }
        },
    };
    if process.as_ref().is_some_and(|pr| pr.oom_score_adj.is_some()) && namespaces.is_new(NsType::User) {
        // Allowed: the kernel checks the right against the host, and reports it clearly.
    }

    let cgroups_path = linux.as_ref().and_then(|l| l.cgroups_path().clone()).filter(|p| !p.as_os_str().is_empty());
    let resources = match linux.as_ref().and_then(|l| l.resources().as_ref()) {
        None => crate::cgroups::Resources::default(),
        Some(r) => crate::cgroups::Resources::from_spec(r).unwrap_or_else(|problems| {
            p.0.extend(problems);
            Default::default()
        }),
    };

    let seccomp = match linux.as_ref().and_then(|l| l.seccomp().as_ref()) {
        None => None,
        Some(s) => match crate::seccomp::convert(s, "linux.seccomp") {
            Ok(profile) => Some(profile),
            Err(problems) => {
                p.0.extend(problems);
                None
            }
        },
    };

    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Config {
        bundle: bundle.to_path_buf(),
        rootfs,
        root_readonly,
        spec,
        namespaces,
        uid_mappings,
        gid_mappings,
        mounts,
        devices,
        device_rules,
        hostname,
        domainname,
        sysctls,
        masked_paths,
        readonly_paths,
        rootfs_propagation,
        cgroups_path,
        resources,
        time_offsets,
        seccomp,
        process,
    })
}

/// Check what the spec names on the host: the root filesystem, namespace files, bind sources.
pub fn check_host(config: &Config) -> Vec<Problem> {
    let mut p = Problems::default();
    match std::fs::metadata(&config.rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => p.add("root.path", format!("{} is not a directory", config.rootfs.display())),
        Err(e) => p.add("root.path", format!("{}: {e}", config.rootfs.display())),
    }
    for (i, (t, path)) in config.namespaces.to_join().enumerate() {
        if let Err(e) = std::fs::metadata(path) {
            p.add(format!("linux.namespaces({t}).path"), format!("{}: {e}", path.display()));
        }
        let _ = i;
    }
    for (i, m) in config.mounts.iter().enumerate() {
        if m.is_bind() {
            if let Some(src) = &m.source {
                if let Err(e) = std::fs::metadata(src) {
                    p.add(format!("mounts[{i}].source"), format!("bind source {}: {e}", src.display()));
                }
            }
        }
    }
    p.0
}

fn convert_namespaces(list: Vec<oci_spec::runtime::LinuxNamespace>, p: &mut Problems) -> Namespaces {
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (i, ns) in list.into_iter().enumerate() {
        let t = NsType::from(ns.typ());
        if !seen.insert(t) {
            p.add(format!("linux.namespaces[{i}]"), format!("{t} namespace is listed twice"));
            continue;
        }
        let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = &path {
            if !path.is_absolute() {
                p.add(format!("linux.namespaces[{i}].path"), format!("{} must be absolute", path.display()));
            }
        }
        entries.push((t, path));
    }
    Namespaces::new(entries)
}

fn convert_mappings(list: Option<Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMap> {
    list.unwrap_or_default()
        .into_iter()
        .map(|m| IdMap { container_id: m.container_id(), host_id: m.host_id(), size: m.size() })
        .collect()
}

fn convert_mounts(bundle: &Path, mounts: &[oci_spec::runtime::Mount], ns: &Namespaces, p: &mut Problems) -> Vec<MountEntry> {
    if !mounts.is_empty() && !ns.contains(NsType::Mount) {
        p.add("mounts", "mounts need a mount namespace (add {\"type\": \"mount\"} to linux.namespaces), or they would change the host");
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        if dest.as_os_str().is_empty() {
            p.add(format!("{field}.destination"), "is required");
            continue;
        }
        // runc accepts relative destinations as relative to "/", with a warning; so do we.
        let destination = if dest.is_absolute() { dest.clone() } else { Path::new("/").join(dest) };
        if destination.components().any(|c| c == std::path::Component::ParentDir) {
            p.add(format!("{field}.destination"), format!("{} must not contain \"..\"", dest.display()));
            continue;
        }
        let options = match MountOptions::parse(m.options().as_deref().unwrap_or_default()) {
            Ok(o) => o,
            Err(e) => {
                p.add(format!("{field}.options"), e);
                continue;
            }
        };
        let typ = m.typ().clone().filter(|t| !t.is_empty());
        let is_bind = options.bind || typ.as_deref() == Some("bind");
        if typ.is_none() && !is_bind {
            p.add(format!("{field}.type"), "is required unless the options contain bind or rbind");
            continue;
        }
        let source = m.source().clone().filter(|s| !s.as_os_str().is_empty());
        let source = match (is_bind, source) {
            (true, None) => {
                p.add(format!("{field}.source"), "a bind mount needs a source");
                continue;
            }
            (true, Some(s)) if s.is_relative() => Some(bundle.join(s)),
            (_, s) => s,
        };
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            p.add(format!("{field}.uidMappings"), "id-mapped mounts are not supported by runtime-rs yet");
            continue;
        }
        out.push(MountEntry { destination, typ, source, options });
    }
    out
}

fn convert_devices(list: Vec<oci_spec::runtime::LinuxDevice>, p: &mut Problems) -> Vec<Device> {
    let mut out = Vec::new();
    for (i, d) in list.into_iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        if !d.path().is_absolute() {
            p.add(format!("{field}.path"), format!("{} must be absolute", d.path().display()));
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::P => DeviceKind::Fifo,
            LinuxDeviceType::A => {
                p.add(format!("{field}.type"), "\"a\" is not a device type; use c, b, u or p");
                continue;
            }
        };
        if d.major() < 0 || d.minor() < 0 {
            p.add(format!("{field}"), "major and minor must not be negative");
            continue;
        }
        out.push(Device {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    out
}

/// Device rules given apart from a config.json (`update`'s resources): `field` is what
/// errors call the list (`devices`). The result is only these rules; a container's whole
/// list is `cgroups::devices::container_rules` of them and the container's `Config::devices`.
pub fn device_rules(list: &[oci_spec::runtime::LinuxDeviceCgroup], field: &str) -> Result<Vec<DeviceRule>, Vec<Problem>> {
    let mut p = Problems::default();
    let rules = convert_device_rules_at(list.to_vec(), field, &mut p);
    if p.0.is_empty() { Ok(rules) } else { Err(p.0) }
}

/// `linux.resources.devices`: allow/deny rules for the device cgroup, in order.
fn convert_device_rules(list: Vec<oci_spec::runtime::LinuxDeviceCgroup>, p: &mut Problems) -> Vec<DeviceRule> {
    convert_device_rules_at(list, "linux.resources.devices", p)
}

fn convert_device_rules_at(list: Vec<oci_spec::runtime::LinuxDeviceCgroup>, at: &str, p: &mut Problems) -> Vec<DeviceRule> {
    let mut out = Vec::new();
    for (i, d) in list.into_iter().enumerate() {
        let field = format!("{at}[{i}]");
        let before = p.0.len();
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::C) => Some(DeviceType::Char),
            Some(LinuxDeviceType::B) => Some(DeviceType::Block),
            Some(other) => {
                p.add(format!("{field}.type"), format!("{:?} is not a device cgroup type; use a, b or c", other.as_str()));
                None
            }
        };
        let major = device_number(d.major(), &format!("{field}.major"), p);
        let minor = device_number(d.minor(), &format!("{field}.minor"), p);
        let access = match d.access().as_deref().map(Access::parse) {
            None => {
                p.add(format!("{field}.access"), "is required; use one or more of r, w and m");
                Access::default()
            }
            Some(Ok(a)) if a.is_empty() => {
                p.add(format!("{field}.access"), "must not be empty; use one or more of r, w and m");
                Access::default()
            }
            Some(Ok(a)) => a,
            Some(Err(c)) => {
                p.add(format!("{field}.access"), format!("{c:?} is not an access; use one or more of r, w and m"));
                Access::default()
            }
        };
        if p.0.len() == before {
            out.push(DeviceRule { allow: d.allow(), kind, major, minor, access });
        }
    }
    out
}

/// A major or minor: absent (or -1, as Docker writes `*`) means any.
fn device_number(n: Option<i64>, field: &str, p: &mut Problems) -> Option<u32> {
    match n {
        None | Some(-1) => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                p.add(field, format!("{n} is out of range; leave it out to mean any"));
                None
            }
        },
    }
}

/// Sysctls a container may set: only those its own namespaces scope (as runc allows).
fn check_sysctl(key: &str, ns: &Namespaces) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
        "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
    ];
    if key.is_empty() || key.contains('/') || key.split('.').any(|part| part.is_empty() || part == "..") {
        return Err("is not a valid sysctl name".into());
    }
    let (needed, what) = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        (NsType::Ipc, "an IPC")
    } else if key.starts_with("net.") {
        (NsType::Network, "a network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (NsType::Uts, "a UTS")
    } else {
        return Err("is not scoped by any namespace the container can own; setting it would change the host".into());
    };
    if ns.contains(needed) {
        Ok(())
    } else {
        Err(format!("needs {what} namespace of the container's own"))
    }
}

fn absolute_paths(field: &str, list: Option<Vec<String>>, p: &mut Problems) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, s) in list.unwrap_or_default().into_iter().enumerate() {
        let path = PathBuf::from(&s);
        if path.is_absolute() {
            out.push(path);
        } else {
            p.add(format!("{field}[{i}]"), format!("{s:?} must be absolute"));
        }
    }
    out
}

/// Convert and check a `process` object; `prefix` is prepended to field names ("process.").
pub fn convert_process(proc_: &Process, prefix: &str) -> Result<ProcessConfig, Vec<Problem>> {
    let mut p = Problems::default();
    let args = proc_.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        p.add(format!("{prefix}args"), "must name the program to run");
    }
    let cwd = proc_.cwd().clone();
    if !cwd.is_absolute() {
        p.add(format!("{prefix}cwd"), format!("{} must be an absolute path", cwd.display()));
    }
    let env = proc_.env().clone().unwrap_or_default();
    for (i, kv) in env.iter().enumerate() {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => p.add(format!("{prefix}env[{i}]"), format!("{kv:?} is not KEY=VALUE")),
        }
    }
    let capabilities = proc_.capabilities().as_ref().map(|c| Capabilities {
        bounding: convert_caps(c.bounding().as_ref()),
        effective: convert_caps(c.effective().as_ref()),
        inheritable: convert_caps(c.inheritable().as_ref()),
        permitted: convert_caps(c.permitted().as_ref()),
        ambient: convert_caps(c.ambient().as_ref()),
    });
    let mut rlimits = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in proc_.rlimits().clone().unwrap_or_default().iter().enumerate() {
        let (name, resource) = rlimit_resource(r.typ());
        if !seen.insert(name) {
            p.add(format!("{prefix}rlimits[{i}]"), format!("{name} is given twice"));
        }
        if r.soft() > r.hard() {
            p.add(format!("{prefix}rlimits[{i}]"), format!("{name}: soft limit {} is above hard limit {}", r.soft(), r.hard()));
        }
        rlimits.push(Rlimit { name: name.to_string(), resource, soft: r.soft(), hard: r.hard() });
    }
    if let Some(adj) = proc_.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            p.add(format!("{prefix}oomScoreAdj"), format!("{adj} is outside -1000..1000"));
        }
    }
    if proc_.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) {
        p.add(format!("{prefix}apparmorProfile"), "AppArmor is not supported by runtime-rs");
    }
    if proc_.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) {
        p.add(format!("{prefix}selinuxLabel"), "SELinux is not supported by runtime-rs");
    }
    if proc_.io_priority().is_some() {
        p.add(format!("{prefix}ioPriority"), "is not supported by runtime-rs yet");
    }
    if proc_.scheduler().is_some() {
        p.add(format!("{prefix}scheduler"), "is not supported by runtime-rs yet");
    }
    if proc_.exec_cpu_affinity().is_some() {
        p.add(format!("{prefix}execCPUAffinity"), "is not supported by runtime-rs yet");
    }
    let user = proc_.user();
    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(ProcessConfig {
        terminal: proc_.terminal().unwrap_or(false),
        console_size: proc_.console_size().map(|b| (b.height().min(u16::MAX as u64) as u16, b.width().min(u16::MAX as u64) as u16)),
        args,
        env,
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        capabilities,
        rlimits,
        no_new_privileges: proc_.no_new_privileges().unwrap_or(false),
        oom_score_adj: proc_.oom_score_adj(),
    })
}

/// Map spec capabilities to the caps crate's, by their `CAP_*` names.
fn convert_caps(list: Option<&OciCaps>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in list.into_iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        if let Ok(cap) = caps::Capability::from_str(&name) {
            out.insert(cap);
        }
    }
    out
}

fn rlimit_resource(t: PosixRlimitType) -> (&'static str, Resource) {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        T::RlimitFsize => ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        T::RlimitData => ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        T::RlimitStack => ("RLIMIT_STACK", Resource::RLIMIT_STACK),
        T::RlimitCore => ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        T::RlimitRss => ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        T::RlimitNproc => ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        T::RlimitNofile => ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        T::RlimitMemlock => ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        T::RlimitAs => ("RLIMIT_AS", Resource::RLIMIT_AS),
        T::RlimitLocks => ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        T::RlimitSigpending => ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        T::RlimitMsgqueue => ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        T::RlimitNice => ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        T::RlimitRtprio => ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        T::RlimitRttime => ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_json;

    fn spec(json: &str) -> Spec {
        parse_json(json).unwrap()
    }

    fn problems(json: &str) -> Vec<String> {
        match convert(Path::new("/b"), spec(json)) {
            Ok(_) => vec![],
            Err(p) => p.into_iter().map(|p| p.to_string()).collect(),
        }
    }

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

    #[test]
    fn minimal_spec_converts() {
        let c = convert(Path::new("/b"), spec(MINIMAL)).unwrap();
        assert_eq!(c.rootfs, Path::new("/b/rootfs"));
        assert!(c.namespaces.is_new(NsType::Pid));
        assert_eq!(c.process.unwrap().args, vec!["sh"]);
    }

    #[test]
    fn collects_every_problem_with_its_field() {
        let got = problems(
            r#"{"ociVersion":"1.0.2",
            "process":{"args":[],"cwd":"relative","user":{"uid":0,"gid":0},"env":["NOEQUALS"],
              "rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]},
            "hostname":"h",
            "linux":{"namespaces":[{"type":"pid"},{"type":"pid"}],"maskedPaths":["proc/kcore"],
              "sysctl":{"kernel.panic":"1","net.ipv4.ip_forward":"1"}}}"#,
        );
        let want = [
            "root: is required",
            "linux.namespaces[1]: pid namespace is listed twice",
            "hostname: setting the hostname needs a UTS namespace",
            "linux.sysctl.kernel.panic: is not scoped",
            "linux.sysctl.net.ipv4.ip_forward: needs a network namespace",
            "linux.maskedPaths[0]: \"proc/kcore\" must be absolute",
            "process.args: must name the program",
            "process.cwd: relative must be an absolute path",
            "process.env[0]: \"NOEQUALS\" is not KEY=VALUE",
            "process.rlimits[0]: RLIMIT_NOFILE: soft limit 10 is above hard limit 5",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn user_namespace_needs_mappings_and_mappings_need_user_namespace() {
        let got = problems(r#"{"root":{"path":"r"},"linux":{"namespaces":[{"type":"user"}]}}"#);
        assert!(got.iter().any(|g| g.starts_with("linux.uidMappings: a new user namespace needs uid mappings")), "{got:?}");
        let got = problems(r#"{"root":{"path":"r"},"linux":{"uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}"#);
        assert!(got.iter().any(|g| g.contains("no new user namespace")), "{got:?}");
    }

    #[test]
    fn mounts_need_a_mount_namespace() {
        let got = problems(r#"{"root":{"path":"r"},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}]}"#);
        assert!(got.iter().any(|g| g.starts_with("mounts: mounts need a mount namespace")), "{got:?}");
    }

    #[test]
    fn bind_mount_sources_are_taken_from_the_bundle() {
        let c = convert(
            Path::new("/b"),
            spec(r#"{"root":{"path":"r"},"linux":{"namespaces":[{"type":"mount"}]},
                "mounts":[{"destination":"data","source":"vol","options":["rbind","ro"]},
                          {"destination":"/x","type":"bind","source":"/abs"}]}"#),
        )
        .unwrap();
        assert_eq!(c.mounts[0].destination, Path::new("/data"));
        assert_eq!(c.mounts[0].source.as_deref(), Some(Path::new("/b/vol")));
        assert!(c.mounts[1].is_bind());
        assert_eq!(c.mounts[1].source.as_deref(), Some(Path::new("/abs")));
    }

    #[test]
    fn bad_mounts_are_named() {
        let got = problems(
            r#"{"root":{"path":"r"},"linux":{"namespaces":[{"type":"mount"}]},
            "mounts":[{"destination":"/a"},{"destination":"/b","options":["bind"]},
                      {"destination":"/c/../d","type":"tmpfs"},{"destination":"/e","type":"bind","source":"/s","options":["rro"]}]}"#,
        );
        assert!(got.iter().any(|g| g.starts_with("mounts[0].type: is required")), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("mounts[1].source: a bind mount needs a source")), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("mounts[2].destination")), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("mounts[3].options: mount option \"rro\"")), "{got:?}");
    }

    #[test]
    fn capabilities_map_by_name() {
        let c = convert(
            Path::new("/b"),
            spec(r#"{"root":{"path":"r"},"process":{"args":["x"],"cwd":"/","user":{"uid":0,"gid":0},
               "capabilities":{"bounding":["CAP_KILL","CAP_NET_BIND_SERVICE","CAP_SYS_ADMIN"],"ambient":["CAP_KILL"]}}}"#),
        )
        .unwrap();
        let caps = c.process.unwrap().capabilities.unwrap();
        assert_eq!(caps.bounding.len(), 3);
        assert!(caps.bounding.contains(&caps::Capability::CAP_SYS_ADMIN));
        assert!(caps.ambient.contains(&caps::Capability::CAP_KILL));
        assert!(caps.effective.is_empty());
    }

    #[test]
    fn unknown_capability_is_a_parse_error_naming_the_field() {
        let err = parse_json::<Spec>(r#"{"process":{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_KILL","CAP_NOPE"]}}}"#).unwrap_err();
        assert_eq!(err.0, "process.capabilities.bounding[1]");
        assert!(err.1.contains("CAP_NOPE"), "{}", err.1);
    }

    #[test]
    fn time_offsets_need_a_new_time_namespace() {
        let got = problems(r#"{"root":{"path":"r"},"linux":{"timeOffsets":{"monotonic":{"secs":10}}}}"#);
        assert!(got.iter().any(|g| g.starts_with("linux.timeOffsets: time offsets need a new time namespace")), "{got:?}");
        let c = convert(
            Path::new("/b"),
            spec(r#"{"root":{"path":"r"},"linux":{"namespaces":[{"type":"time"}],"timeOffsets":{"boottime":{"secs":-5,"nanosecs":7},"monotonic":{"secs":10}}}}"#),
        )
        .unwrap();
        assert_eq!(c.time_offsets, vec![("boottime".into(), -5, 7), ("monotonic".into(), 10, 0)]);
    }

    #[test]
    fn seccomp_problems_join_the_others() {
        let got = problems(
            r#"{"root":{"path":"r"},"hostname":"h","linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO",
               "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["write","foo_bar"],"action":"SCMP_ACT_ALLOW"}]}}}"#,
        );
        assert!(got.iter().any(|g| g.starts_with("hostname: setting the hostname needs a UTS namespace")), "{got:?}");
        assert!(got.iter().any(|g| g.starts_with("linux.seccomp.syscalls[1].names[1]: unknown syscall \"foo_bar\"")), "{got:?}");
        let c = convert(Path::new("/b"), spec(r#"{"root":{"path":"r"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#)).unwrap();
        assert_eq!(c.seccomp.unwrap().default_action, crate::seccomp::Action::Allow);
    }

    #[test]
    fn device_rules_are_converted_in_order_before_the_defaults() {
        let c = convert(
            Path::new("/b"),
            spec(r#"{"root":{"path":"r"},"linux":{"resources":{"devices":[
                {"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":7,"access":"rw"},
                {"allow":true,"type":"b","major":-1,"access":"m"}]}}}"#),
        )
        .unwrap();
        let shown: Vec<String> = c.device_rules.iter().map(ToString::to_string).collect();
        assert_eq!(shown[..3], ["deny a *:* rwm", "allow c 1:7 rw", "allow b *:* m"]);
        assert!(shown[3..].contains(&"allow c 1:3 rwm".to_string()), "{shown:?}");
    }

    #[test]
    fn bad_device_rules_name_their_field() {
        let got = problems(
            r#"{"root":{"path":"r"},"linux":{"resources":{"devices":[
                {"allow":true,"type":"c","major":1,"access":"rwx"},
                {"allow":true,"type":"c","major":1},
                {"allow":true,"type":"p","access":"r"},
                {"allow":true,"type":"c","major":-5,"minor":4294967296,"access":""}]}}}"#,
        );
        let want = [
            "linux.resources.devices[0].access: 'x' is not an access",
            "linux.resources.devices[1].access: is required",
            "linux.resources.devices[2].type: \"p\" is not a device cgroup type",
            "linux.resources.devices[3].major: -5 is out of range",
            "linux.resources.devices[3].minor: 4294967296 is out of range",
            "linux.resources.devices[3].access: must not be empty",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn device_rules_alone_name_the_given_field() {
        let list: Vec<oci_spec::runtime::LinuxDeviceCgroup> =
            serde_json::from_str(r#"[{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"},{"allow":true,"access":"q"}]"#).unwrap();
        let err = device_rules(&list, "devices").unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].to_string(), "devices[1].access: 'q' is not an access; use one or more of r, w and m");
        let ok = device_rules(&list[..1], "devices").unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].to_string(), "allow c 10:200 rw");
    }

    #[test]
    fn a_spec_without_device_rules_still_gets_the_defaults_only() {
        let c = convert(Path::new("/b"), spec(MINIMAL)).unwrap();
        use crate::cgroups::devices::decide;
        assert!(decide(&c.device_rules, DeviceType::Char, 1, 3, Access::READ));
        assert!(!decide(&c.device_rules, DeviceType::Char, 1, 1, Access::READ));
    }

    #[test]
    fn resources_are_converted_and_their_problems_named() {
        let c = convert(Path::new("/b"), spec(r#"{"root":{"path":"r"},"linux":{"resources":{"memory":{"limit":1048576},"devices":[{"allow":false,"access":"rwm"}]}}}"#)).unwrap();
        assert_eq!(c.resources.memory_max, Some(crate::cgroups::Limit::Value(1048576)));
        let got = problems(r#"{"root":{"path":"r"},"linux":{"resources":{"cpu":{"quota":5}}}}"#);
        assert_eq!(got, vec!["linux.resources.cpu.quota: 5 is below the kernel's minimum of 1000 microseconds"]);
    }

    #[test]
    fn sysctls_follow_their_namespaces() {
        let ns = Namespaces::new(vec![(NsType::Ipc, None), (NsType::Network, Some("/run/netns/x".into()))]);
        assert!(check_sysctl("kernel.shmmax", &ns).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", &ns).is_ok());
        assert!(check_sysctl("net.core.somaxconn", &ns).is_ok());
        assert!(check_sysctl("kernel.hostname", &ns).is_err());
        assert!(check_sysctl("vm.swappiness", &ns).is_err());
        assert!(check_sysctl("net/../../x", &ns).is_err());
    }
}
