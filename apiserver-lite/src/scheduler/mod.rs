//! The scheduler: binds pending pods to nodes through the binding subresource.
//!
//! Two watches (nodes, pods) keep an in-memory cache of every node and the requests of the
//! pods placed on it, and a queue of the pods waiting for a node (those with no
//! `spec.nodeName` whose `spec.schedulerName` is `default-scheduler`). One loop takes pods
//! off the queue, filters and scores the nodes, assumes the pod onto the chosen node in the
//! cache and hands the binding to a task of its own, so bindings run concurrently while the
//! next pod is placed. A pod that fits nowhere gets PodScheduled=False and a FailedScheduling
//! event in kube-scheduler's words, and waits until a node or pod changes.

pub mod algorithm;
pub mod cache;
pub mod filters;
pub mod fit_error;
pub mod matching;
pub mod queue;
pub mod resources;
pub mod score;
pub mod topology;
pub mod writes;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::{mpsc, Notify, Semaphore};

use algorithm::Algorithm;
use cache::{pod_key, Cache, PodInfo, PodKey};
use queue::Queue;
use writes::{Writer, SCHEDULER_NAME};

/// Bindings in flight at once: enough to hide the API's latency, few enough that a burst
/// of pods does not flood the server.
const CONCURRENT_BINDINGS: usize = 256;
/// Scheduled events written at once; they queue behind bindings rather than compete.
const EVENT_WRITERS: usize = 8;

struct ScheduledEvent {
    pod: Arc<Pod>,
    message: String,
}

#[derive(Default)]
struct State {
    cache: Cache,
    queue: Queue,
    algorithm: Algorithm,
    nodes_synced: bool,
    pods_synced: bool,
    /// Keys seen since the watch (re)listed, to drop what vanished meanwhile.
    node_relist: Option<HashSet<String>>,
    pod_relist: Option<HashSet<PodKey>>,
}

pub struct Scheduler {
    client: kube::Client,
    state: Mutex<State>,
    wake: Notify,
    writer: Writer,
    bindings: Arc<Semaphore>,
    events: mpsc::UnboundedSender<ScheduledEvent>,
    /// Taken by `run`, which starts the event writer.
    event_queue: Mutex<Option<mpsc::UnboundedReceiver<ScheduledEvent>>>,
}

/// Run the scheduler until the process ends.
pub async fn run(client: kube::Client) {
    Arc::new(Scheduler::new(client)).run().await
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn ours(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME)
}

enum Work {
    Bind { key: PodKey, pod: Arc<Pod>, node: String },
    Failed { pod: Arc<Pod>, message: String },
}

impl Scheduler {
    pub fn new(client: kube::Client) -> Scheduler {
        let (events, event_queue) = mpsc::unbounded_channel();
        Scheduler {
            events,
            event_queue: Mutex::new(Some(event_queue)),
            writer: Writer::new(client.clone()),
            client,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            bindings: Arc::new(Semaphore::new(CONCURRENT_BINDINGS)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("scheduler state lock")
    }

    pub async fn run(self: Arc<Self>) {
        let nodes = tokio::spawn(self.clone().watch_nodes());
        let pods = tokio::spawn(self.clone().watch_pods());
        let queue = self.event_queue.lock().expect("event queue lock").take();
        let events = queue.map(|q| tokio::spawn(self.clone().write_events(q)));
        self.schedule_loop().await;
        nodes.abort();
        pods.abort();
        if let Some(e) = events {
            e.abort();
        }
    }

    async fn watch_nodes(self: Arc<Self>) {
        let mut events = watcher(Api::<Node>::all(self.client.clone()), watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: node watch failed, retrying");
                    continue;
                }
            };
            let now = Instant::now();
            let mut st = self.state();
            match event {
                watcher::Event::Init => st.node_relist = Some(HashSet::new()),
                watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                    if let Some(seen) = st.node_relist.as_mut() {
                        seen.insert(node.metadata.name.clone().unwrap_or_default());
                    }
                    st.cache.set_node(node);
                    st.queue.move_all(now);
                }
                watcher::Event::Delete(node) => st.cache.remove_node(node.metadata.name.as_deref().unwrap_or("")),
                watcher::Event::InitDone => {
                    let seen = st.node_relist.take().unwrap_or_default();
                    for name in st.cache.node_names() {
                        if !seen.contains(&name) {
                            st.cache.remove_node(&name);
                        }
                    }
                    st.nodes_synced = true;
                }
            }
            drop(st);
            self.wake.notify_one();
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let mut events = watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: pod watch failed, retrying");
                    continue;
                }
            };
            let now = Instant::now();
            let mut st = self.state();
            match event {
                watcher::Event::Init => st.pod_relist = Some(HashSet::new()),
                watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                    if let Some(seen) = st.pod_relist.as_mut() {
                        seen.insert(pod_key(&pod));
                    }
                    self.pod_seen(&mut st, pod, now);
                }
                watcher::Event::Delete(pod) => {
                    let key = pod_key(&pod);
                    st.queue.remove(&key);
                    if st.cache.remove_pod(&key) {
                        st.queue.move_all(now);
                    }
                    self.writer.forget(pod.metadata.uid.as_deref().unwrap_or(""));
                }
                watcher::Event::InitDone => {
                    let seen = st.pod_relist.take().unwrap_or_default();
                    for key in st.cache.placed_keys() {
                        if !seen.contains(&key) && !st.cache.is_assumed(&key) {
                            st.cache.remove_pod(&key);
                        }
                    }
                    for key in st.queue.keys() {
                        if !seen.contains(&key) {
                            st.queue.remove(&key);
                        }
                    }
                    st.queue.move_all(now);
                    st.pods_synced = true;
                }
            }
            drop(st);
            self.wake.notify_one();
        }
    }

    fn pod_seen(&self, st: &mut State, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        if let Some(node) = assigned_node(&pod).map(str::to_string) {
            st.queue.remove(&key);
            if is_terminal(&pod) {
                // A finished pod frees its room.
                if st.cache.remove_pod(&key) {
                    st.queue.move_all(now);
                }
            } else {
                st.cache.place(Arc::new(PodInfo::new(Arc::new(pod))), &node, false);
                st.queue.move_all(now);
            }
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(&pod) || !ours(&pod) {
            st.queue.remove(&key);
            return;
        }
        if st.cache.is_assumed(&key) {
            // Being bound; the binding's outcome decides what happens next.
            return;
        }
        st.queue.upsert(&key, Arc::new(pod));
    }

    /// Take the next pod and decide, under the lock; the writes happen outside it.
    fn next_work(&self) -> Result<Work, Option<Instant>> {
        let now = Instant::now();
        let mut st = self.state();
        if !(st.nodes_synced && st.pods_synced) {
            return Err(None);
        }
        let Some((key, pod)) = st.queue.pop(now) else { return Err(st.queue.next_due()) };
        let st = &mut *st;
        match st.algorithm.schedule(&mut st.cache, Arc::new(PodInfo::new(pod.clone()))) {
            Ok(node) => Ok(Work::Bind { key, pod, node }),
            Err(e) => {
                st.queue.unschedulable(&key, now);
                Ok(Work::Failed { pod, message: e.to_string() })
            }
        }
    }

    async fn schedule_loop(self: &Arc<Self>) {
        loop {
            match self.next_work() {
                Ok(Work::Bind { key, pod, node }) => {
                    let permit = self.bindings.clone().acquire_owned().await.expect("the binding semaphore is never closed");
                    let me = self.clone();
                    tokio::spawn(async move {
                        let bound = me.bind(&key, &pod, &node).await;
                        // The event is not part of the binding: let the next one start.
                        drop(permit);
                        if bound {
                            me.scheduled_event(&pod, &node);
                        }
                    });
                }
                Ok(Work::Failed { pod, message }) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.record_failure(&pod, &message).await });
                }
                Err(due) => {
                    let wait = due.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                }
            }
        }
    }

    /// Bind, or undo the assumption and retry later; whether the pod is bound.
    async fn bind(&self, key: &str, pod: &Pod, node: &str) -> bool {
        match self.writer.bind(pod, node).await {
            Ok(()) => {
                self.state().queue.remove(key);
                self.writer.forget(pod.metadata.uid.as_deref().unwrap_or(""));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: binding failed");
                {
                    let mut st = self.state();
                    st.cache.forget(key);
                    if e.is_final() {
                        st.queue.remove(key);
                    } else {
                        st.queue.error(key, Instant::now());
                    }
                }
                self.wake.notify_one();
                false
            }
        }
    }

    /// Queued for the event writer: bindings go first, events follow as the API allows.
    fn scheduled_event(&self, pod: &Arc<Pod>, node: &str) {
        let (ns, name) = (pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""));
        let message = format!("Successfully assigned {ns}/{name} to {node}");
        let _ = self.events.send(ScheduledEvent { pod: pod.clone(), message });
    }

    /// Write the queued Scheduled events, a few at a time.
    async fn write_events(self: Arc<Self>, queue: mpsc::UnboundedReceiver<ScheduledEvent>) {
        tokio_stream::wrappers::UnboundedReceiverStream::new(queue)
            .for_each_concurrent(EVENT_WRITERS, |e| {
                let me = self.clone();
                async move {
                    if let Err(err) = me.writer.event(&e.pod, "Normal", "Scheduled", "Binding", &e.message).await {
                        tracing::debug!(error = %err, "scheduler: event not recorded");
                    }
                }
            })
            .await
    }

    async fn record_failure(&self, pod: &Pod, message: &str) {
        tracing::info!(pod = %pod_key(pod), message, "scheduler: pod fits no node");
        if let Err(e) = self.writer.unschedulable(pod, message).await {
            tracing::debug!(error = %e, "scheduler: condition not set");
        }
        if let Err(e) = self.writer.event(pod, "Warning", "FailedScheduling", "Scheduling", message).await {
            tracing::debug!(error = %e, "scheduler: event not recorded");
        }
    }
}
