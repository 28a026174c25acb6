//! `krs-portmap`: the hostPort CNI plugin (chained after krs-bridge). See `cni::portmap`.

fn main() {
    cni::skel::main(&cni::portmap::Portmap::default())
}
