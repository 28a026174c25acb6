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

/// Every source's pods as far as the agent knows them: its last full list plus what it sent
/// since. Once every source has listed, their union is what should run here.
#[derive(Debug, Default)]
pub struct Desired {
    sources: std::collections::HashMap<Source, HashSet<String>>,
    expected: usize,
}

impl Desired {
    /// `expected`: how many sources must list before the union means anything.
    pub fn new(expected: usize) -> Desired {
        Desired { sources: Default::default(), expected }
    }

    /// Take `update` into account; returns the pods that should run here when `update`
    /// completes a full list and every source has listed (the moment stale pods may go).
    pub fn apply(&mut self, update: &PodUpdate) -> Option<HashSet<String>> {
        match update {
            // A pod that arrives after its source's list belongs to it too: it must not look
            // stale when another source lists.
            PodUpdate::Set(source, pod) => {
                if let (Some(uids), Some(uid)) = (self.sources.get_mut(source), &pod.metadata.uid) {
                    uids.insert(uid.clone());
                }
                None
            }
            PodUpdate::Gone(source, uid) => {
                if let Some(uids) = self.sources.get_mut(source) {
                    uids.remove(uid);
                }
                None
            }
            PodUpdate::Synced(source, uids) => {
                self.sources.insert(*source, uids.clone());
                (self.sources.len() == self.expected).then(|| self.sources.values().flatten().cloned().collect())
            }
        }
    }
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

#[cfg(test)]
mod desired_tests {
    use super::*;

    fn set(source: Source, uid: &str) -> PodUpdate {
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.into());
        PodUpdate::Set(source, Box::new(pod))
    }

    fn uids(list: &[&str]) -> HashSet<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn a_pod_created_after_the_api_list_stays_desired_when_the_static_pods_list_again() {
        let mut d = Desired::new(2);
        assert_eq!(d.apply(&PodUpdate::Synced(Source::Api, uids(&["a"]))), None, "the file source has not listed yet");
        assert_eq!(d.apply(&PodUpdate::Synced(Source::File, uids(&["s"]))), Some(uids(&["a", "s"])));
        assert_eq!(d.apply(&set(Source::Api, "b")), None);
        // The static pod folder is read again (every 20 s): b, created since the API's list, stays.
        assert_eq!(d.apply(&PodUpdate::Synced(Source::File, uids(&["s"]))), Some(uids(&["a", "b", "s"])));
        assert_eq!(d.apply(&PodUpdate::Gone(Source::Api, "a".into())), None);
        assert_eq!(d.apply(&PodUpdate::Synced(Source::File, uids(&["s"]))), Some(uids(&["b", "s"])));
        // A relist replaces what the source had.
        assert_eq!(d.apply(&PodUpdate::Synced(Source::Api, uids(&["c"]))), Some(uids(&["c", "s"])));
    }
}
