//! Containers: the OCI runtime spec built from the image config and the CRI
//! `ContainerConfig` (`spec/`), what that needs from the node (`host.rs`), and the OCI
//! runtime (runtime-rs, runc or crun) driven through its runc-compatible command line
//! (`oci.rs`); `manager.rs` runs a container's life with them and the monitor, and
//! `record.rs` is what it keeps of each container.

pub mod host;
pub mod manager;
pub mod oci;
pub mod record;
pub mod spec;

pub use host::{Host, HostDevice, NodeHost};
pub use oci::{ExecOptions, ExecOutput, OciCli, OciError, OciRuntime, OciState, OciStatus};
pub use spec::{build_spec, exec_process, linux_resources, Namespace, SandboxNamespaces, SandboxParts, SpecError, SpecInput};
pub use manager::ContainerManager;
