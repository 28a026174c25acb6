//! Cluster DNS, the job CoreDNS's kubernetes plugin does, run by the node agent: answers for
//! the cluster zone from Services and EndpointSlices, everything else forwarded to the
//! node's resolvers.
//!
//! [`records`] builds the zone from API objects and [`answer`] answers a question from it
//! (both pure); [`server`] serves UDP and TCP on one address; [`upstream`] forwards;
//! [`watch`] keeps the records current from the API server and runs the lot.

mod error;
pub mod zone;
pub mod records;
pub mod answer;
pub mod resolv_conf;
pub mod upstream;
pub mod server;
mod bind;
pub mod watch;

pub use answer::{Answer, Reply};
pub use error::DnsError;
pub use records::Records;
pub use server::{serve, DnsServer};
pub use upstream::Upstreams;
pub use watch::{run, run_on, DnsConfig};
pub use zone::Zone;
