//! The server process: storage opened and cached, the cluster bootstrapped, the API served
//! over TLS with authentication.

mod app;
mod bootstrap;
mod join_token;

pub use app::{GIT_VERSION, KUBERNETES_MINOR, app};
pub use bootstrap::{SYSTEM_NAMESPACES, bootstrap, kubernetes_service_ip};
mod run;

pub use join_token::{JoinTokenError, JoinTokenOptions, create_join_token};
pub use run::{Config, ServerError, StorageBackend, parse_cidr, run, write_kubelet_serving_cert, write_node_kubeconfig};
