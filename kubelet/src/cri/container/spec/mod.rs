//! A container's OCI runtime spec (config.json) from the image config, the CRI
//! `ContainerConfig` and what its pod sandbox holds, with containerd's CRI defaults: the
//! 14 default capabilities, masked and read-only /proc and /sys paths, the standard /proc,
//! /dev, /sys and cgroup mounts, no rlimits (the runtime's own are inherited), the pod's
//! network, IPC and UTS namespaces joined by path.
//!
//! [`build_spec`] is pure: what it needs from the node (device nodes, the kernel's
//! capabilities, a Localhost seccomp profile) comes through [`Host`]. Every invalid input
//! is a [`SpecError`] naming the CRI field, e.g. `linux.security_context.run_as_user`.
//!
//! - `process.rs` — args, env, cwd and the user (Kubernetes command/args over the image's
//!   Entrypoint/Cmd, runAsUser/runAsGroup/runAsUsername, supplemental groups)
//! - `security.rs` — capabilities, seccomp, masked and read-only paths
//! - `mounts.rs` — default mounts, the sandbox's files, the CRI mounts; devices
//! - `resources.rs` — `linux.resources` and the OOM score

mod mounts;
mod process;
mod resources;
mod security;

pub use process::exec_process;
pub use resources::linux_resources;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cri_api::runtime::v1::{ContainerConfig, LinuxContainerSecurityContext, NamespaceMode};
use images::process_config::{ConfigError, UserDb};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, RootBuilder, Spec, SpecBuilder,
};

use super::host::Host;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: {message} is not supported by kubelet-rs")]
    Unsupported { field: String, message: String },
    #[error("the container's process (image config and command, args, envs, working_dir, user): {0}")]
    Process(#[source] ConfigError),
    #[error("{field}: {path}: {source}")]
    Host { field: String, path: PathBuf, source: std::io::Error },
    #[error("building the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid { field: field.into(), message: message.into() }
}

/// How the container gets one of its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// A new one of its own.
    New,
    /// The one bind-mounted at this path (the sandbox's).
    Join(PathBuf),
    /// The node's (no namespace of this type in the spec).
    Node,
}

/// The sandbox's namespaces, as its pod asked for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNamespaces {
    pub network: Namespace,
    pub ipc: Namespace,
    pub uts: Namespace,
    /// The pod's shared pid namespace (`shareProcessNamespace`); containers whose
    /// `namespace_options.pid` is POD join it. `New` when the pod shares none.
    pub pid: Namespace,
}

/// What a pod sandbox gives its containers.
#[derive(Debug, Clone)]
pub struct SandboxParts {
    pub id: String,
    pub hostname: String,
    pub namespaces: SandboxNamespaces,
    /// Host files bind-mounted at /etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm.
    /// `None`: not mounted (for /dev/shm: a tmpfs of the container's own).
    pub hosts_file: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    /// `LinuxPodSandboxConfig.cgroup_parent`, cgroupfs style (`/kubepods/burstable/pod<uid>`).
    /// Empty: [`DEFAULT_CGROUP_PARENT`].
    pub cgroup_parent: String,
    /// `LinuxPodSandboxConfig.sysctls`, applied in every container of the pod.
    pub sysctls: HashMap<String, String>,
}

/// Where containers of pods that name no cgroup parent go.
pub const DEFAULT_CGROUP_PARENT: &str = "/kubelet-rs";

pub struct SpecInput<'a> {
    /// The container's id: the last part of its cgroup path.
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a SandboxParts,
    pub image: &'a ImageConfiguration,
    /// The image reference, for the `io.kubernetes.cri.image-name` annotation.
    pub image_name: &'a str,
    /// The image's /etc/passwd and /etc/group, for user names.
    pub users: &'a UserDb,
    /// The mounted root filesystem (absolute).
    pub rootfs: &'a Path,
    pub host: &'a dyn Host,
}

/// The container's spec.
pub fn build_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let sc = security_context(input.config);
    let privileged = sc.privileged;
    if !input.rootfs.is_absolute() {
        return Err(invalid("rootfs", format!("{} must be absolute", input.rootfs.display())));
    }
    security::check_apparmor(&sc)?;
    let namespaces = namespaces(input, &sc)?;
    let caps = security::capabilities(&sc, input.host)?;
    let mut proc_ = process::process(input, &sc)?;
    proc_.set_capabilities(Some(caps.oci.clone()));
    proc_.set_oom_score_adj(resources::oom_score_adj(input.config)?);

    let (mounts, rootfs_propagation) = mounts::mounts(input, &sc)?;
    let devices = mounts::devices(input, privileged)?;
    let mut res = resources::resources(input.config, input.host)?;
    res.set_devices(Some(devices.rules));

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces.clone())
        .cgroups_path(cgroups_path(&input.sandbox.cgroup_parent, input.id)?)
        .resources(res)
        .devices(devices.nodes)
        .masked_paths(security::masked_paths(&sc))
        .readonly_paths(security::readonly_paths(&sc))
        .sysctl(sysctls(&input.sandbox.sysctls, &namespaces)?);
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    if let Some(profile) = security::seccomp(&sc, &caps.bounding, input.host)? {
        linux = linux.seccomp(profile);
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(input.rootfs).readonly(sc.readonly_rootfs).build()?)
        .process(proc_)
        .mounts(mounts)
        .annotations(annotations(input))
        .linux(linux.build()?);
    // In the pod's UTS namespace the hostname is already the pod's.
    if input.sandbox.namespaces.uts == Namespace::New && !input.sandbox.hostname.is_empty() {
        spec = spec.hostname(input.sandbox.hostname.clone());
    }
    let mut spec = spec.build()?;
    if spec.hostname().as_deref() == Some(OCI_SPEC_DEFAULT_HOSTNAME) {
        spec.set_hostname(None);
    }
    Ok(spec)
}

/// What oci-spec's builder puts in `hostname` when none is given.
const OCI_SPEC_DEFAULT_HOSTNAME: &str = "youki";

/// The container's security context; an absent one is the all-defaults one.
fn security_context(c: &ContainerConfig) -> LinuxContainerSecurityContext {
    c.linux.as_ref().and_then(|l| l.security_context.clone()).unwrap_or_default()
}

fn namespace_mode(v: i32, field: &str) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(v).map_err(|_| invalid(field, format!("{v} is not a namespace mode")))
}

fn namespaces(input: &SpecInput, sc: &LinuxContainerSecurityContext) -> Result<Vec<LinuxNamespace>, SpecError> {
    const F: &str = "linux.security_context.namespace_options";
    let opts = sc.namespace_options.clone().unwrap_or_default();
    let ns = &input.sandbox.namespaces;
    let network = match namespace_mode(opts.network, &format!("{F}.network"))? {
        NamespaceMode::Node => Namespace::Node,
        NamespaceMode::Pod => ns.network.clone(),
        other => return Err(invalid(format!("{F}.network"), format!("{} is not a network namespace mode", other.as_str_name()))),
    };
    let ipc = match namespace_mode(opts.ipc, &format!("{F}.ipc"))? {
        NamespaceMode::Node => Namespace::Node,
        NamespaceMode::Pod => ns.ipc.clone(),
        other => return Err(invalid(format!("{F}.ipc"), format!("{} is not an IPC namespace mode", other.as_str_name()))),
    };
    let pid = match namespace_mode(opts.pid, &format!("{F}.pid"))? {
        NamespaceMode::Node => Namespace::Node,
        NamespaceMode::Pod => ns.pid.clone(),
        NamespaceMode::Container => Namespace::New,
        NamespaceMode::Target => {
            return Err(SpecError::Unsupported { field: format!("{F}.pid"), message: "TARGET (another container's pid namespace)".into() });
        }
    };
    if let Some(u) = &opts.userns_options
        && (u.mode != NamespaceMode::Node as i32 || !u.uids.is_empty() || !u.gids.is_empty())
    {
        return Err(SpecError::Unsupported { field: format!("{F}.userns_options"), message: "user namespaces".into() });
    }
    let mut out = Vec::new();
    for (typ, how) in [
        (LinuxNamespaceType::Pid, &pid),
        (LinuxNamespaceType::Network, &network),
        (LinuxNamespaceType::Ipc, &ipc),
        (LinuxNamespaceType::Uts, &ns.uts),
    ] {
        match how {
            Namespace::Node => {}
            Namespace::New => out.push(LinuxNamespaceBuilder::default().typ(typ).build()?),
            Namespace::Join(p) => {
                if !p.is_absolute() {
                    return Err(invalid(format!("sandbox {typ} namespace"), format!("{} must be absolute", p.display())));
                }
                out.push(LinuxNamespaceBuilder::default().typ(typ).path(p.clone()).build()?)
            }
        }
    }
    out.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Mount).build()?);
    out.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Cgroup).build()?);
    Ok(out)
}

/// `<parent>/<id>`, cgroupfs style.
fn cgroups_path(parent: &str, id: &str) -> Result<PathBuf, SpecError> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(invalid("container id", format!("{id:?} cannot name a cgroup")));
    }
    let parent = if parent.is_empty() { DEFAULT_CGROUP_PARENT } else { parent };
    if parent.ends_with(".slice") || parent.contains(':') {
        return Err(SpecError::Unsupported {
            field: "sandbox linux.cgroup_parent".into(),
            message: format!("{parent:?}: a systemd cgroup parent (the node uses the cgroupfs driver)"),
        });
    }
    if parent.split('/').any(|c| c == "..") {
        return Err(invalid("sandbox linux.cgroup_parent", format!("{parent:?} must not contain \"..\"")));
    }
    Ok(Path::new("/").join(parent.trim_start_matches('/')).join(id))
}

/// The pod's sysctls; those of a namespace the container shares with the node would
/// change the node, and are refused.
fn sysctls(s: &HashMap<String, String>, namespaces: &[LinuxNamespace]) -> Result<HashMap<String, String>, SpecError> {
    const IPC: &[&str] = &[
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    for key in s.keys() {
        let field = format!("sandbox linux.sysctls.{key}");
        if key.is_empty() || key.contains('/') || key.split('.').any(|p| p.is_empty()) {
            return Err(invalid(field, "is not a sysctl name"));
        }
        if key.starts_with("net.") && !has(LinuxNamespaceType::Network) {
            return Err(invalid(field, "the container uses the node's network namespace; setting it would change the node"));
        }
        if (IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.")) && !has(LinuxNamespaceType::Ipc) {
            return Err(invalid(field, "the container uses the node's IPC namespace; setting it would change the node"));
        }
    }
    Ok(s.clone())
}

fn annotations(input: &SpecInput) -> HashMap<String, String> {
    let mut a = input.config.annotations.clone();
    let name = input.config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.container-name", name),
        ("io.kubernetes.cri.sandbox-id", input.sandbox.id.clone()),
        ("io.kubernetes.cri.image-name", input.image_name.to_string()),
    ] {
        a.insert(k.to_string(), v);
    }
    a
}
