//! The cluster DNS's one error type: what went wrong, with the address, path or name a user
//! needs to fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster domain {domain:?} is not a valid DNS name: {reason}")]
    InvalidDomain { domain: String, reason: String },

    #[error("cannot bind the cluster DNS {proto} socket on {addr}: {source} (is something else listening on port {port}?)", port = addr.port())]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },

    #[error("the cluster DNS {proto} socket on {addr} failed: {source}")]
    Socket { proto: &'static str, addr: SocketAddr, source: std::io::Error },

    #[error("cannot read upstream resolvers from {path}: {source}")]
    ResolvConf { path: PathBuf, source: std::io::Error },

    #[error("upstream resolver {server}: {source}")]
    UpstreamIo { server: SocketAddr, source: std::io::Error },

    #[error("upstream resolver {server} did not answer within {timeout:?}")]
    UpstreamTimeout { server: SocketAddr, timeout: Duration },

    #[error("upstream resolver {server} sent an unusable reply: {reason}")]
    UpstreamReply { server: SocketAddr, reason: String },

    #[error("no upstream resolver configured (no nameserver lines in the resolv.conf)")]
    NoUpstream,

    #[error("cannot encode a DNS message: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}
