//! A container's config: metadata (the attempt is the restart count), image, command and
//! args with `$(VAR)` references expanded, env, mounts, the kubelet's labels and
//! annotations, the log path (relative to the sandbox's log directory), tty/stdin, and the
//! Linux part (resources, security context).

use std::collections::HashMap;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ConfigError, ContainerContext, hash, labels, resources, security};
use crate::agent::expand::expand;

pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

pub fn container_config(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext,
) -> Result<cri::ContainerConfig, ConfigError> {
    let lookup = |name: &str| ctx.envs.iter().rev().find(|kv| kv.key == name).map(|kv| kv.value.clone());
    let expand_all = |list: &Option<Vec<String>>| list.iter().flatten().map(|s| expand(s, lookup)).collect::<Vec<_>>();
    let linux_resources = resources::container_resources(pod, container, ctx.node_memory_capacity);
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: container.name.clone(), attempt: ctx.restart_count }),
        image: Some(cri::ImageSpec {
            image: ctx.image.clone(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: ctx.envs.clone(),
        mounts: ctx.mounts.clone(),
        labels: container_labels(pod, container, ctx),
        annotations: container_annotations(pod, container, ctx),
        log_path: log_path(&container.name, ctx.restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources),
            security_context: Some(security::container_security_context(pod, container, &ctx.seccomp_root)?),
        }),
        ..Default::default()
    })
}

/// `<container name>/<restart count>.log`, under the sandbox's log directory.
pub fn log_path(name: &str, restart_count: u32) -> String {
    format!("{name}/{restart_count}.log")
}

fn container_labels(pod: &Pod, container: &Container, ctx: &ContainerContext) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAME.to_string(), pod.metadata.name.clone().unwrap_or_default()),
        (labels::POD_NAMESPACE.to_string(), pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())),
        (labels::POD_UID.to_string(), pod.metadata.uid.clone().unwrap_or_default()),
        (labels::CONTAINER_NAME.to_string(), container.name.clone()),
        (labels::CONTAINER_TYPE.to_string(), ctx.kind.to_string()),
    ])
}

fn container_annotations(pod: &Pod, container: &Container, ctx: &ContainerContext) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (labels::CONTAINER_HASH.to_string(), hash::container_hash(container)),
        (labels::RESTART_COUNT.to_string(), ctx.restart_count.to_string()),
        (
            labels::TERMINATION_MESSAGE_PATH.to_string(),
            container.termination_message_path.clone().unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into()),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_string(),
            container.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
        ),
    ]);
    if let Some(grace) = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
        a.insert(labels::TERMINATION_GRACE_PERIOD.to_string(), grace.to_string());
    }
    if let Some(pre_stop) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        a.insert(labels::PRE_STOP_HANDLER.to_string(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        a.insert(labels::CONTAINER_PORTS.to_string(), json);
    }
    a
}
