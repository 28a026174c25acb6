//! Starting a process inside a container: the runtime forks an intermediate process that
//! joins and creates namespaces, which forks the container process (the init at `create`, or
//! a new process at `exec`). They follow the protocol in `message.rs`.
//!
//! The container process is born in its cgroup (`clone3(CLONE_INTO_CGROUP)`, see `fork.rs`),
//! or else moved there by the runtime before it does anything of the container's; it never
//! runs the user's code before `Proceed`. The runtime binary itself runs from a sealed copy
//! (`exe_seal`), so a container can never write to it.

pub mod channel;
mod container_process;
mod fork;
pub mod credentials;
mod intermediate;
mod keyring;
mod launch;
pub mod message;
pub mod program;

pub use launch::{launch, Launch, LaunchError, Role};

/// An error inside a forked child, sent to the runtime as text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChildError(pub String);

impl ChildError {
    pub fn new(context: &str, e: impl std::fmt::Display) -> Self {
        ChildError(format!("{context}: {e}"))
    }
}
