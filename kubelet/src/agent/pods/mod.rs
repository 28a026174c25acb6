//! Pods on this node: the sync of each pod with the runtime (being written: issue 9).

pub mod cri_config;
pub mod qos;
