//! Startup, liveness and readiness probes: a [`ProbeManager`] runs one worker task per
//! (pod, container, probe kind), each probing on its period after the initial delay and
//! turning results into state through the thresholds, as the upstream kubelet:
//! - readiness starts false, liveness true, startup false (not started);
//! - a startup probe gates the other two: they do not run until it has succeeded, and it
//!   stops probing once it has;
//! - a liveness or startup probe that fails `failureThreshold` times in a row asks the
//!   pod sync to kill the container ([`ProbeEvent::Kill`]) and stops until the container
//!   is replaced (a new container id starts every worker of that container afresh);
//! - every failed probe is an `Unhealthy` event ("Liveness probe failed: ...").
//!
//! Exec probes go through the runtime via [`ProbeExec`], which the agent implements over
//! CRI `ExecSync`; `http` (also used by lifecycle hooks), tcp and `grpc` probes connect from
//! the node.

pub mod action;
pub mod grpc;
pub mod http;
mod manager;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod tests;
mod worker;

use std::time::Duration;

pub use action::{ProbeResult, Target};
pub use manager::ProbeManager;

/// What an exec in a container gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// stdout and stderr.
    pub output: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The command ran past its timeout (a failed probe).
    #[error("timed out")]
    Timeout,
    /// The runtime could not run it (a probe error, not a failure).
    #[error("{0}")]
    Failed(String),
}

/// Runs a command in a container (CRI `ExecSync`): what exec probes and exec hooks need
/// from the runtime.
#[async_trait::async_trait]
pub trait ProbeExec: Send + Sync {
    /// Runs `cmd` in the container `container_id`, waiting at most `timeout` (zero: no
    /// limit), and returns its exit code and output. A command that runs past the timeout
    /// is `ExecError::Timeout`; anything that kept it from running is `Failed`.
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput, ExecError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As in event messages: `Liveness`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// The pod a probe belongs to, for events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// What the probes tell the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// A probe failed or could not be run: a Warning event with reason `Unhealthy` on the
    /// container, with this message ("Readiness probe failed: ...", "Liveness probe
    /// errored: ...").
    Unhealthy { pod: PodRef, container: String, container_id: String, kind: ProbeKind, message: String },
    /// A liveness or startup probe failed past its threshold: kill the container (it is
    /// then restarted by the restart policy). `message` is the Killing event's ("Container
    /// web failed liveness probe, will be restarted"); `grace_period` is the probe's
    /// terminationGracePeriodSeconds, if it overrides the pod's.
    Kill {
        pod: PodRef,
        container: String,
        container_id: String,
        kind: ProbeKind,
        message: String,
        grace_period: Option<i64>,
    },
    /// The readiness or startup state of a container changed (update the pod's status).
    Changed { pod: PodRef, container: String, container_id: String, kind: ProbeKind, success: bool },
}
