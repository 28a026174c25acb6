//! The Node object and its upkeep: the machine's facts (`machine`), the Node to register
//! and its status (`object`), its conditions (`conditions`), registration and the status
//! loop (`registration`), the heartbeat Lease (`lease`), the flags that shape it (`flags`),
//! all over the API calls of `api` (implemented for `kube::Client`); `cri_facts` is
//! [`RuntimeFacts`] over any CRI runtime; `tls_bootstrap` gets a joining node its
//! certificates with a bootstrap token (`--bootstrap-kubeconfig`).
//!
//! The integrator builds a [`NodeStatusManager`] and a [`LeaseRenewer`] and spawns their
//! `run()`; it passes [`CriRuntimeFacts`] (or its own [`RuntimeFacts`]) and marks
//! [`LoopActivity`] after each pass of the pod sync loop.

pub mod api;
pub mod conditions;
pub mod cri_facts;
pub mod flags;
pub mod lease;
pub mod machine;
pub mod object;
pub mod registration;
pub mod tls_bootstrap;

pub use api::{ApiCallError, NodeApi};
pub use cri_facts::CriRuntimeFacts;
pub use conditions::{RuntimeCondition, RuntimeStatus};
pub use lease::LeaseRenewer;
pub use machine::{HostMachine, Machine, MachineFacts, MachineUsage};
pub use object::{NodeConfig, Reserved};
pub use registration::{LoopActivity, NodeEventSink, NodeStatusManager, RuntimeFacts};
