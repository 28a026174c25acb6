//! Pods bound to this node, watched on the API server with the field selector
//! `spec.nodeName=<node>` (as the kubelet does), relisting after errors with backoff.

use std::collections::HashSet;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use super::{PodUpdate, Source, is_mirror};

/// Send the node's pods to `out` until it closes.
pub async fn watch(client: kube::Client, node: String, out: mpsc::Sender<PodUpdate>) {
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    // UIDs seen during a (re)list, reported when it completes.
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let updates = match event {
            Ok(event) => translate(event, &mut listing),
            Err(e) => {
                tracing::warn!("watching the node's pods: {e}");
                continue;
            }
        };
        for update in updates {
            if out.send(update).await.is_err() {
                return;
            }
        }
    }
}

/// A watcher event as updates: mirror pods are never run, so they are left out.
fn translate(event: Event<Pod>, listing: &mut HashSet<String>) -> Vec<PodUpdate> {
    match event {
        Event::Init => {
            listing.clear();
            Vec::new()
        }
        Event::InitApply(pod) => {
            if is_mirror(&pod) {
                return Vec::new();
            }
            if let Some(uid) = &pod.metadata.uid {
                listing.insert(uid.clone());
            }
            vec![PodUpdate::Set(Source::Api, Box::new(pod))]
        }
        Event::InitDone => vec![PodUpdate::Synced(Source::Api, std::mem::take(listing))],
        Event::Apply(pod) if is_mirror(&pod) => Vec::new(),
        Event::Apply(pod) => vec![PodUpdate::Set(Source::Api, Box::new(pod))],
        Event::Delete(pod) if is_mirror(&pod) => Vec::new(),
        Event::Delete(pod) => pod.metadata.uid.map(|uid| PodUpdate::Gone(Source::Api, uid)).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(uid: &str, mirror: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("p-{uid}"));
        pod.metadata.uid = Some(uid.into());
        if mirror {
            pod.metadata.annotations = Some(BTreeMap::from([(super::super::MIRROR_ANNOTATION.to_string(), "h".to_string())]));
        }
        pod
    }

    #[test]
    fn a_relist_reports_exactly_the_pods_it_saw() {
        let mut listing = HashSet::from(["stale".to_string()]);
        assert!(translate(Event::Init, &mut listing).is_empty());
        assert_eq!(translate(Event::InitApply(pod("a", false)), &mut listing).len(), 1);
        assert!(translate(Event::InitApply(pod("m", true)), &mut listing).is_empty());
        match translate(Event::InitDone, &mut listing).as_slice() {
            [PodUpdate::Synced(Source::Api, uids)] => assert_eq!(uids, &HashSet::from(["a".to_string()])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mirror_pods_are_never_run_or_stopped_from_the_api() {
        let mut listing = HashSet::new();
        assert!(translate(Event::Apply(pod("m", true)), &mut listing).is_empty());
        assert!(translate(Event::Delete(pod("m", true)), &mut listing).is_empty());
        assert!(matches!(translate(Event::Delete(pod("a", false)), &mut listing).as_slice(), [PodUpdate::Gone(Source::Api, uid)] if uid == "a"));
    }
}
