//! Capabilities, seccomp, and the masked and read-only paths.
//!
//! Capabilities as containerd: the 14 defaults of Docker; `add_capabilities: ["ALL"]` is
//! every capability the kernel knows and `drop_capabilities: ["ALL"]` none, then the named
//! ones are added, then dropped. Bounding, effective and permitted get the same set;
//! inheritable stays empty (CVE-2022-24769); ambient only what `add_ambient_capabilities`
//! names. Privileged: every capability, no seccomp, nothing masked.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use cri_api::runtime::v1::LinuxContainerSecurityContext;
use cri_api::runtime::v1::security_profile::ProfileType;
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxSeccomp};

use super::{SpecError, invalid};
use crate::cri::container::host::Host;

const SC: &str = "linux.security_context";

/// The capabilities every container gets unless it drops them.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// As runc's and containerd's defaults.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub(super) struct Caps {
    pub oci: LinuxCapabilities,
    pub bounding: HashSet<Capability>,
}

/// `NET_ADMIN` or `CAP_NET_ADMIN`, any case.
fn parse_cap(name: &str, field: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| invalid(field, format!("{name:?} is not a capability")))
}

pub(super) fn capabilities(sc: &LinuxContainerSecurityContext, host: &dyn Host) -> Result<Caps, SpecError> {
    let all: HashSet<Capability> = host.all_capabilities().into_iter().collect();
    let mut set: HashSet<Capability>;
    let mut ambient = HashSet::new();
    if sc.privileged {
        set = all;
    } else {
        set = DEFAULT_CAPABILITIES.into_iter().collect();
        let c = sc.capabilities.clone().unwrap_or_default();
        let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
        if c.add_capabilities.iter().any(is_all) {
            set = all.clone();
        }
        if c.drop_capabilities.iter().any(is_all) {
            set.clear();
        }
        for (i, name) in c.add_capabilities.iter().enumerate().filter(|(_, n)| !is_all(n)) {
            set.insert(parse_cap(name, &format!("{SC}.capabilities.add_capabilities[{i}]"))?);
        }
        for (i, name) in c.drop_capabilities.iter().enumerate().filter(|(_, n)| !is_all(n)) {
            set.remove(&parse_cap(name, &format!("{SC}.capabilities.drop_capabilities[{i}]"))?);
        }
        for (i, name) in c.add_ambient_capabilities.iter().enumerate() {
            let field = format!("{SC}.capabilities.add_ambient_capabilities[{i}]");
            let cap = parse_cap(name, &field)?;
            if !set.contains(&cap) {
                return Err(invalid(field, format!("{name:?} is not among the container's capabilities")));
            }
            ambient.insert(cap);
        }
    }
    let mut oci = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set.clone())
        .inheritable(ambient.clone())
        .build()?;
    // Not left to the builder: oci-spec's default ambient set holds three capabilities.
    oci.set_ambient((!ambient.is_empty()).then_some(ambient));
    Ok(Caps { oci, bounding: set })
}

pub(super) fn masked_paths(sc: &LinuxContainerSecurityContext) -> Vec<String> {
    paths(sc, &sc.masked_paths, DEFAULT_MASKED_PATHS)
}

pub(super) fn readonly_paths(sc: &LinuxContainerSecurityContext) -> Vec<String> {
    paths(sc, &sc.readonly_paths, DEFAULT_READONLY_PATHS)
}

/// Privileged: none. Otherwise the kubelet's list (it sends the defaults for the Default
/// procMount); an empty list cannot be told from an absent one in proto3, so it means
/// the defaults, as with containerd.
fn paths(sc: &LinuxContainerSecurityContext, given: &[String], defaults: &[&str]) -> Vec<String> {
    if sc.privileged {
        Vec::new()
    } else if given.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        given.to_vec()
    }
}

/// The seccomp filter: none when privileged, unconfined, or not asked for (as containerd,
/// a missing profile is unconfined); RuntimeDefault: runtime-rs's built-in profile for
/// the container's bounding capabilities; Localhost: the profile file on the node.
pub(super) fn seccomp(
    sc: &LinuxContainerSecurityContext,
    bounding: &HashSet<Capability>,
    host: &dyn Host,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let field = format!("{SC}.seccomp");
    let Some(profile) = sc.seccomp.as_ref().filter(|_| !sc.privileged) else { return Ok(None) };
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::Unconfined) => Ok(None),
        Ok(ProfileType::RuntimeDefault) => {
            let caps: caps::CapsHashSet =
                bounding.iter().filter_map(|c| caps::Capability::from_str(&format!("CAP_{c}")).ok()).collect();
            Ok(Some(runtime_rs::seccomp::runtime_default(&caps)))
        }
        Ok(ProfileType::Localhost) => {
            let path = Path::new(&profile.localhost_ref);
            if !path.is_absolute() {
                return Err(invalid(format!("{field}.localhost_ref"), format!("{:?} must be an absolute path", profile.localhost_ref)));
            }
            let text = host.read_file(path).map_err(|source| SpecError::Host {
                field: format!("{field}.localhost_ref"),
                path: path.to_path_buf(),
                source,
            })?;
            let parsed: LinuxSeccomp = serde_json::from_str(&text).map_err(|e| {
                invalid(format!("{field}.localhost_ref"), format!("{}: not an OCI seccomp profile: {e}", path.display()))
            })?;
            Ok(Some(parsed))
        }
        Err(_) => Err(invalid(format!("{field}.profile_type"), format!("{} is not a profile type", profile.profile_type))),
    }
}

/// AppArmor is not available: a Localhost profile cannot be honoured, so it is refused
/// rather than ignored; RuntimeDefault and Unconfined mean no profile here.
pub(super) fn check_apparmor(sc: &LinuxContainerSecurityContext) -> Result<(), SpecError> {
    match &sc.apparmor {
        Some(p) if p.profile_type == ProfileType::Localhost as i32 => Err(SpecError::Unsupported {
            field: format!("{SC}.apparmor"),
            message: format!("AppArmor profile {:?}", p.localhost_ref),
        }),
        _ => Ok(()),
    }
}
