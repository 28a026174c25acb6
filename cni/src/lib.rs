//! Pod networking by the CNI specification (1.1, with results also in 1.0.0 and 0.4.0).
//!
//! Plugins (each an ordinary CNI plugin binary, usable by any CNI runtime):
//! `krs-bridge` (veth pair into the pod's netns, attached to a Linux bridge), `krs-host-local`
//! (IP address management in the reference plugin's on-disk format) and `krs-portmap`
//! (hostPort DNAT, chained). The runtime side ([`runtime`]) loads a network configuration list
//! and runs its plugins for a pod, as containerd's and CRI-O's libcni do.

pub mod spec;
pub mod skel;
pub mod invoke;
pub mod netlink;
mod tool;
pub mod firewall;
pub mod ipam;
pub mod bridge;
pub mod portmap;
pub mod runtime;
pub mod proxy;
pub mod node_services;
pub mod dns;
