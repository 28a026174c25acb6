//! Running one probe once: exec, httpGet, tcpSocket or grpc against a container, giving
//! success, failure (counts toward the thresholds) or an error (the probe could not be
//! run: ignored by the thresholds, as upstream).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::http::{self, HttpTarget, Scheme};
use super::{ExecError, ProbeExec, grpc};

/// What a probe is run against.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub container_id: String,
    /// The pod's IP: the default host of httpGet, tcpSocket and grpc.
    pub pod_ip: String,
    /// The container's spec, for port names.
    pub container: Container,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure(String),
    /// The probe could not be run (no action, unknown port name, the runtime's exec failed).
    Error(String),
}

/// A port by number or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port {s:?} in container {:?}", container.name))?,
        },
    };
    u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {n}"))
}

/// An httpGet action's request: the host defaults to the pod IP.
pub fn http_target(action: &HTTPGetAction, target: &Target) -> Result<HttpTarget, String> {
    let scheme = match action.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("HTTP") => Scheme::Http,
        s if s.eq_ignore_ascii_case("HTTPS") => Scheme::Https,
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let host = action.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
    if host.is_empty() {
        return Err("the pod has no IP yet".into());
    }
    Ok(HttpTarget {
        scheme,
        host,
        port: resolve_port(&action.port, &target.container)?,
        path: action.path.clone().unwrap_or_default(),
        headers: action.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect(),
    })
}

/// The probe's timeout (`timeoutSeconds`, default and minimum 1 s).
pub fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64)
}

/// The runtime enforces an exec probe's timeout; this guard only catches a runtime that
/// does not answer, so it allows for the call's own overhead.
const EXEC_SLACK: Duration = Duration::from_secs(1);

/// How much of an exec probe's output is kept.
pub const MAX_OUTPUT: usize = 10 * 1024;

pub async fn run(probe: &Probe, target: &Target, exec: &dyn ProbeExec) -> ProbeResult {
    let timeout = timeout(probe);
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        if cmd.is_empty() {
            return ProbeResult::Error("exec probe without a command".into());
        }
        let outcome = tokio::time::timeout(timeout + EXEC_SLACK, exec.exec_sync(&target.container_id, &cmd, timeout)).await;
        return match outcome {
            Ok(Ok(out)) if out.exit_code == 0 => ProbeResult::Success,
            Ok(Ok(out)) => {
                // As upstream, at most 10 KiB of output make it into the message.
                let output = &out.output[..out.output.len().min(MAX_OUTPUT)];
                ProbeResult::Failure(String::from_utf8_lossy(output).into_owned())
            }
            Ok(Err(ExecError::Timeout)) | Err(_) => {
                ProbeResult::Failure(format!("command {:?} timed out", cmd.join(" ")))
            }
            Ok(Err(ExecError::Failed(msg))) => ProbeResult::Error(msg),
        };
    }
    if let Some(h) = &probe.http_get {
        let t = match http_target(h, target) {
            Ok(t) => t,
            Err(e) => return ProbeResult::Error(e),
        };
        return match http::get(&t, timeout).await {
            Ok(status) if (200..400).contains(&status) => ProbeResult::Success,
            Ok(status) => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {status}")),
            Err(e) => ProbeResult::Failure(e),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = match resolve_port(&t.port, &target.container) {
            Ok(p) => p,
            Err(e) => return ProbeResult::Error(e),
        };
        let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
        return match http::dial(&host, port, timeout).await {
            Ok(_) => ProbeResult::Success,
            Err(e) => ProbeResult::Failure(e),
        };
    }
    if let Some(g) = &probe.grpc {
        let Some(port) = u16::try_from(g.port).ok().filter(|p| *p > 0) else {
            return ProbeResult::Error(format!("invalid port number: {}", g.port));
        };
        if target.pod_ip.is_empty() {
            return ProbeResult::Error("the pod has no IP yet".into());
        }
        return match grpc::check(&target.pod_ip, port, g.service.as_deref().unwrap_or_default(), timeout).await {
            Ok(()) => ProbeResult::Success,
            Err(e) => ProbeResult::Failure(e),
        };
    }
    ProbeResult::Error("missing probe handler".into())
}
