//! apiserver-lite: a Kubernetes-compatible API server. The real `kubectl` talks to it as to
//! any cluster; `kubelet-rs --apiserver` embeds it.
//!
//! Layout: `resources` (what the server serves: groups, versions, kinds, verbs), `storage`
//! (revisioned keys with watch; SQLite or etcd behind one trait), `handlers` (the REST verbs
//! over storage), `patch` (JSON, merge and strategic merge patches), `table` (server-side
//! `kubectl get` columns), `discovery` and `openapi` (what clients learn the API from), `auth`
//! (TLS, certificates, kubeconfig, authentication and authorization), `controllers` and
//! `scheduler` (the control loops), `leader_election` and `control_plane` (running them, in
//! process or on their own, one copy acting at a time).

pub mod admission;
pub mod auth;
pub mod control_plane;
pub mod controllers;
pub mod discovery;
pub mod handlers;
pub mod leader_election;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod scheduler;
pub mod server;
pub mod storage;
pub mod table;
