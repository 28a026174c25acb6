//! Containers: the OCI runtime spec built from the image config and the CRI
//! `ContainerConfig` (`spec/`), what that needs from the node (`host.rs`), and the OCI
//! runtime (runtime-rs, runc or crun) driven through its runc-compatible command line
//! (`oci.rs`).

pub mod host;
pub mod oci;
pub mod spec;

pub use host::{Host, HostDevice, NodeHost};
pub use oci::{ExecOptions, ExecOutput, OciCli, OciError, OciRuntime, OciState, OciStatus};
pub use spec::{build_spec, exec_process, linux_resources, Namespace, SandboxNamespaces, SandboxParts, SpecError, SpecInput};
