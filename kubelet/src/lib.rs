//! The node agent's library: the CRI runtime service (`cri`), which `kubelet-rs cri` serves,
//! and the node agent (`agent`), which drives any CRI runtime for the pods the API server
//! binds to this node.

pub mod agent;
pub mod cri;
