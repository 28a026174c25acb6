//! Container log files: reading them for `kubectl logs` (`read`, in the CRI format of
//! `format`) and rotating them by size (`rotate`).

pub mod format;
pub mod read;
pub mod rotate;

pub use format::Stream;
pub use read::{LogError, LogOptions, StillRunning, write_logs};
pub use rotate::{ContainerLog, LogRotator, LogRuntime, RotationPolicy};
