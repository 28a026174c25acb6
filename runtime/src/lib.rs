//! runtime-rs: an OCI container runtime, command-line compatible with runc.
//!
//! Layout: `spec` loads and validates config.json; `commands` implements the verbs over
//! `container` (persisted state); `process` forks the processes that enter a container;
//! `rootfs`, `namespaces`, `console`, `hooks` and `cgroups` are the pieces they use;
//! `syscall` is the kernel behind a trait.

pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod console;
pub mod container;
pub mod exe_seal;
pub mod hooks;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod syscall;
