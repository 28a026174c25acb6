//! What programs the packet filter: one implementation per firewall (nftables, iptables).

use super::model::ProxyState;

/// What one sync did, for logs, metrics and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether the whole ruleset was rewritten (first sync, after an error) rather than
    /// only the service ports that changed.
    pub full: bool,
    /// Service ports whose rules were written or removed.
    pub changed: usize,
}

pub trait Backend: Send {
    /// Bring the kernel's rules to `state` in one atomic transaction. The first call (and
    /// the one after a failed call) rewrites everything the backend owns, reconciling what a
    /// previous run left; later calls write only what changed since the last success.
    fn sync(&mut self, state: &ProxyState) -> Result<SyncReport, ProxyError>;

    /// Remove every rule, chain, set and table the backend created (clean shutdown).
    fn cleanup(&mut self) -> Result<(), ProxyError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{backend}: {command} failed: {stderr}")]
    Command { backend: &'static str, command: String, stderr: String },
    #[error("{backend}: running {program}: {source}")]
    Spawn { backend: &'static str, program: String, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

/// Where and how a backend acts.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Run the firewall tools inside this named network namespace (`ip netns exec <name>`),
    /// as the root tests and benchmarks do; `None`: the caller's namespace.
    pub netns: Option<String>,
}
