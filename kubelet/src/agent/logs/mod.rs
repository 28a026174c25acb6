//! Container log files: reading them for `kubectl logs` (`read`, in the CRI format of
//! `format`) and rotating them by size (`rotate`, with `cri` its runtime calls over CRI).

pub mod cri;
pub mod format;
pub mod read;
pub mod rotate;

pub use cri::CriLogRuntime;
pub use format::Stream;
pub use read::{LogError, LogOptions, StillRunning, write_logs};
pub use rotate::{ContainerLog, LogRotator, LogRuntime, RotationPolicy};
