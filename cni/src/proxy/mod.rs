//! The service proxy (kube-proxy's job): Services and EndpointSlices from the API server,
//! reduced to a [`model::ProxyState`], programmed into the node's packet filter by a
//! [`Backend`] (nftables by default, in a table of our own).

pub mod backend;
pub mod iptables;
pub mod model;
pub mod conntrack;
mod exec;
mod hash;
pub mod nftables;
pub mod run;
pub mod translate;

pub use backend::{Backend, BackendOptions, ProxyError, SyncReport};
pub use model::{Endpoint, ProxyState, ServicePort, ServicePortName};
pub use run::{ProxyConfig, run};
