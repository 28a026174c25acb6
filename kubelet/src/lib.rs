//! The node agent's library: the CRI runtime service (`cri`), which the `kubelet-rs` binary
//! serves; the kubelet loop comes later (issue 9).

pub mod cri;
