//! Security contexts: the pod's namespaces, the sandbox's security context, and each
//! container's, with the container's own settings over the pod's where both have them
//! (user, group, seccomp) as the upstream kubelet merges them. Masked and read-only paths
//! are left to the runtime's defaults; AppArmor and SELinux are not passed on.

use std::path::Path;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SeccompProfile};

use super::{ConfigError, DEFAULT_SECCOMP_ROOT, invalid};

fn pod_sc(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec.as_ref().and_then(|s| s.security_context.as_ref())
}

/// The pod's namespaces: the node's network, pid or IPC namespace when the pod asks for
/// it; one pid namespace for the whole pod with shareProcessNamespace, else one per container.
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| spec.and_then(f).unwrap_or(false);
    let node_or_pod = |node: bool| if node { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32;
    let pid = if flag(|s| s.host_pid) {
        cri::NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: node_or_pod(flag(|s| s.host_network)),
        pid: pid as i32,
        ipc: node_or_pod(flag(|s| s.host_ipc)),
        ..Default::default()
    }
}

/// fsGroup first, then the supplemental groups.
fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let Some(sc) = pod_sc(pod) else {
        return Vec::new();
    };
    let mut groups: Vec<i64> = sc.fs_group.into_iter().collect();
    for g in sc.supplemental_groups.iter().flatten() {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    groups
}

fn supplemental_groups_policy(pod: &Pod) -> Result<i32, ConfigError> {
    match pod_sc(pod).and_then(|s| s.supplemental_groups_policy.as_deref()) {
        None | Some("Merge") => Ok(cri::SupplementalGroupsPolicy::Merge as i32),
        Some("Strict") => Ok(cri::SupplementalGroupsPolicy::Strict as i32),
        Some(other) => {
            Err(invalid("spec.securityContext.supplementalGroupsPolicy", format!("{other:?} is not Merge or Strict")))
        }
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
}

fn is_privileged(c: &Container) -> bool {
    c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false)
}

/// The seccomp profile for the CRI: none asked for is Unconfined (the kubelet's default
/// without `--seccomp-default`); Localhost profiles are files under `root`.
fn seccomp(profile: Option<&SeccompProfile>, root: &Path, field: &str) -> Result<cri::SecurityProfile, ConfigError> {
    use cri::security_profile::ProfileType;
    let Some(p) = profile else {
        return Ok(cri::SecurityProfile { profile_type: ProfileType::Unconfined as i32, localhost_ref: String::new() });
    };
    match p.type_.as_str() {
        "RuntimeDefault" => {
            Ok(cri::SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() })
        }
        "Unconfined" => {
            Ok(cri::SecurityProfile { profile_type: ProfileType::Unconfined as i32, localhost_ref: String::new() })
        }
        "Localhost" => {
            let name = p.localhost_profile.as_deref().unwrap_or_default();
            if name.is_empty() || Path::new(name).is_absolute() || name.split('/').any(|c| c == "..") {
                return Err(invalid(
                    format!("{field}.localhostProfile"),
                    format!("{name:?} must be a relative path under the seccomp root"),
                ));
            }
            let root = if root.as_os_str().is_empty() { Path::new(DEFAULT_SECCOMP_ROOT) } else { root };
            Ok(cri::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: root.join(name).to_string_lossy().into_owned(),
            })
        }
        other => {
            Err(invalid(format!("{field}.type"), format!("{other:?} is not RuntimeDefault, Unconfined or Localhost")))
        }
    }
}

/// The sandbox's security context.
pub fn sandbox_security_context(
    pod: &Pod,
    seccomp_root: &Path,
) -> Result<cri::LinuxSandboxSecurityContext, ConfigError> {
    let sc = pod_sc(pod);
    Ok(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: sc.and_then(|s| s.run_as_user).map(|value| cri::Int64Value { value }),
        run_as_group: sc.and_then(|s| s.run_as_group).map(|value| cri::Int64Value { value }),
        supplemental_groups: supplemental_groups(pod),
        supplemental_groups_policy: supplemental_groups_policy(pod)?,
        privileged: all_containers(pod).any(is_privileged),
        seccomp: Some(seccomp(
            sc.and_then(|s| s.seccomp_profile.as_ref()),
            seccomp_root,
            "spec.securityContext.seccompProfile",
        )?),
        ..Default::default()
    })
}

/// The container's security context: its own over the pod's.
pub fn container_security_context(
    pod: &Pod,
    container: &Container,
    seccomp_root: &Path,
) -> Result<cri::LinuxContainerSecurityContext, ConfigError> {
    let psc = pod_sc(pod);
    let csc = container.security_context.as_ref();
    let field = |f: &str| format!("container {:?} securityContext.{f}", container.name);
    let run_as_user = csc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user));
    let run_as_group = csc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group));
    let (profile, profile_field) = match csc.and_then(|s| s.seccomp_profile.as_ref()) {
        Some(p) => (Some(p), field("seccompProfile")),
        None => (psc.and_then(|s| s.seccomp_profile.as_ref()), "spec.securityContext.seccompProfile".to_string()),
    };
    let privileged = csc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = csc.and_then(|s| s.capabilities.as_ref());
    let capabilities = caps.map(|c| cri::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        add_ambient_capabilities: Vec::new(),
    });
    match csc.and_then(|s| s.proc_mount.as_deref()) {
        None | Some("Default") => {}
        // Unmasked needs a user namespace, which the pod cannot have here.
        Some(other) => {
            return Err(invalid(field("procMount"), format!("{other:?} is not supported (only Default)")));
        }
    }
    Ok(cri::LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: csc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        supplemental_groups_policy: supplemental_groups_policy(pod)?,
        // Only an explicit `allowPrivilegeEscalation: false` sets no_new_privs.
        no_new_privs: csc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: Some(seccomp(profile, seccomp_root, &profile_field)?),
        ..Default::default()
    })
}

/// See [`super::verify_run_as_non_root`].
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image_user: &str) -> Result<(), ConfigError> {
    let psc = pod_sc(pod);
    let csc = container.security_context.as_ref();
    let non_root = csc.and_then(|s| s.run_as_non_root).or(psc.and_then(|s| s.run_as_non_root)).unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let m = &pod.metadata;
    let pod_name = format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or_default()
    );
    let name = &container.name;
    if let Some(uid) = csc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)) {
        if uid == 0 {
            return Err(ConfigError::RunAsNonRoot(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_name:?}, container: {name})"
            )));
        }
        return Ok(());
    }
    let user = image_user.split(':').next().unwrap_or_default();
    match user.parse::<u32>() {
        _ if user.is_empty() => Err(ConfigError::RunAsNonRoot(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {name})"
        ))),
        Ok(0) => Err(ConfigError::RunAsNonRoot(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {name})"
        ))),
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::RunAsNonRoot(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod_name:?}, container: {name})"
        ))),
    }
}
