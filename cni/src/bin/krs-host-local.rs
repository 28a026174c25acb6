//! The host-local IPAM plugin binary.

fn main() {
    cni::skel::main(&cni::ipam::HostLocal)
}
