//! The CNI protocol itself (spec 1.1): versions, the request a runtime makes through the
//! environment and stdin, network configuration, results and errors. Plugins and the runtime
//! side both speak it through these types; nothing here touches the kernel.

mod error;
mod netconf;
mod request;
mod result;
mod version;

pub use error::{CODE_KERNEL, CODE_RANGE_FULL, Error, ErrorCode};
pub use netconf::{NetConf, NetConfList, PortMapping, ValidAttachment};
pub use request::{Command, Request, validate_link_name};
pub(crate) use request::{validate_container_id, validate_ifname};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{SUPPORTED_VERSIONS, Version, version_reply};
