//! Where the pods this node runs come from: the API server (pods bound to the node) and
//! static pod manifests in a folder. Both send [`PodUpdate`]s to one channel, which the
//! agent applies to the pod manager.

pub mod api;
pub mod mirror;
pub mod static_pods;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;

/// Which source a pod came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Api,
    File,
}

#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// A pod to run, new or changed (a deletionTimestamp means: stop it gracefully).
    Set(Source, Box<Pod>),
    /// The pod with this UID is gone from its source: stop it now.
    Gone(Source, String),
    /// The source listed everything it has: these UIDs are all of its pods, so pods of this
    /// source the runtime still has that are not among them are orphans.
    Synced(Source, HashSet<String>),
}

/// The annotation that marks a mirror pod (the API server's copy of a static pod); the agent
/// never runs those from the API.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The source a pod came from, on pods the agent runs (`api` or `file`).
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// A static pod's hash (its UID), shared by the pod and its mirror.
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

/// Whether `pod` is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// Whether `pod` came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(SOURCE_ANNOTATION)).is_some_and(|s| s == "file")
}
