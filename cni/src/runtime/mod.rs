//! The runtime side of CNI (spec 1.1 section 3, "Execution of Network Configurations"), the
//! counterpart of libcni in containerd and CRI-O: loads network configuration lists from a
//! directory, runs a list's plugins for one attachment (ADD, DEL, CHECK) and for the whole
//! network (STATUS, GC), and keeps each attachment's result in a cache so that DEL and CHECK
//! get the `prevResult` the spec asks for, even after a restart.

mod attachment;
mod cache;
mod chain;
mod config_dir;

use std::path::PathBuf;

pub use attachment::Attachment;
pub use cache::CachedAttachment;
pub use config_dir::{default_network, load_dir};

use crate::spec;

/// Where libcni keeps its cache; the results live under `results/`.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// Runs network configuration lists: plugins are found in `plugin_dirs` (`CNI_PATH`), results
/// cached under `cache_dir`.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

impl CniRuntime {
    pub fn new(plugin_dirs: Vec<PathBuf>) -> CniRuntime {
        CniRuntime { plugin_dirs, cache_dir: PathBuf::from(DEFAULT_CACHE_DIR) }
    }

    pub fn with_cache_dir(mut self, cache_dir: impl Into<PathBuf>) -> CniRuntime {
        self.cache_dir = cache_dir.into();
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the runtime side can fail with; each names the network, plugin, file or
/// attachment involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin failed (or could not be run); `source` is its CNI error.
    #[error("network {network:?}: plugin {plugin:?} failed on {command}: {source}")]
    Plugin { network: String, plugin: String, command: &'static str, source: spec::Error },
    /// A plugin succeeded on ADD but printed no result we can read.
    #[error("network {network:?}: plugin {plugin:?} printed an unreadable ADD result: {source}")]
    BadResult { network: String, plugin: String, source: spec::Error },
    #[error("reading network configuration directory {}: {source}", dir.display())]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("no valid network configuration (*.conflist, *.conf, *.json) in {}", dir.display())]
    NoNetwork { dir: PathBuf },
    #[error("network {network:?}: invalid attachment: {source}")]
    InvalidAttachment { network: String, source: spec::Error },
    /// CHECK needs the result of the ADD it checks.
    #[error("network {network:?}: no cached result for container {container_id:?} interface {ifname:?}; was it added?")]
    NoCachedResult { network: String, container_id: String, ifname: String },
    #[error("cache file {}: {source}", path.display())]
    CacheIo { path: PathBuf, source: std::io::Error },
    #[error("cache file {}: {msg}", path.display())]
    CacheDecode { path: PathBuf, msg: String },
    /// Several steps of a best-effort command (DEL of every plugin, GC) failed.
    #[error("network {network:?}: {} failures on {command}: {}", errors.len(), join(errors))]
    Several { network: String, command: &'static str, errors: Vec<Error> },
}

fn join(errors: &[Error]) -> String {
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// The CNI error code a plugin reported, for callers that treat some codes specially
    /// (11, try again later).
    pub fn cni_code(&self) -> Option<spec::ErrorCode> {
        match self {
            Error::Plugin { source, .. } => Some(source.code),
            Error::Several { errors, .. } => errors.iter().find_map(Error::cni_code),
            _ => None,
        }
    }
}
