//! The one error type of the host-local IPAM plugin, mapped to a CNI error code at the
//! plugin's edge ([`From<IpamError> for spec::Error`]).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::spec::{self, CODE_RANGE_FULL, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// One or more problems in the `ipam` section, each naming its field.
    #[error("invalid ipam configuration: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    #[error("invalid CNI_ARGS {key}={value:?}: not an IP address")]
    InvalidArgs { key: String, value: String },
    #[error("requested IP {ip} is not available in any range set")]
    RequestedOutsideRanges { ip: IpAddr },
    #[error("requested IP {ip} is in range set {set}, which already has requested IP {first}")]
    RequestedTwice { ip: IpAddr, first: IpAddr, set: usize },
    #[error("requested IP {ip} is the gateway of range set {set}")]
    RequestedGateway { ip: IpAddr, set: usize },
    #[error("requested IP {ip} is already allocated to {owner:?}")]
    RequestedTaken { ip: IpAddr, owner: String },
    #[error("container {id} interface {ifname} already holds {held} in range set {set}, not the requested {requested}")]
    HoldsOther { id: String, ifname: String, held: IpAddr, requested: IpAddr, set: usize },
    #[error("no IP addresses available in range set {set}: {ranges}")]
    RangeFull { set: usize, ranges: String },
    #[error("no address allocated to container {id} interface {ifname} in range set {set}")]
    NotAllocated { id: String, ifname: String, set: usize },
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

impl IpamError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IpamError {
        let path = path.into();
        move |source| IpamError::Io { what, path, source }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            IpamError::InvalidConfig(_)
            | IpamError::RequestedOutsideRanges { .. }
            | IpamError::RequestedTwice { .. }
            | IpamError::RequestedGateway { .. } => {
                ErrorCode::InvalidNetworkConfig
            }
            IpamError::InvalidArgs { .. } => ErrorCode::InvalidEnvironment,
            // An address the caller cannot have is, for it, a full range.
            IpamError::RangeFull { .. } | IpamError::RequestedTaken { .. } | IpamError::HoldsOther { .. } => {
                ErrorCode::Plugin(CODE_RANGE_FULL)
            }
            IpamError::NotAllocated { .. } => ErrorCode::UnknownContainer,
            IpamError::Io { .. } => ErrorCode::Io,
        }
    }
}

impl From<IpamError> for spec::Error {
    fn from(e: IpamError) -> spec::Error {
        spec::Error::new(e.code(), e.to_string())
    }
}
