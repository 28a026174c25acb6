//! The proxy's loop: keep every Service and EndpointSlice (watches through reflectors),
//! and whenever they change, reduce them to a [`ProxyState`] and hand it to the backend,
//! at most once per `min_sync_period` (bursts of changes coalesce into one transaction),
//! and again every `resync_period` in case something outside removed our rules. A failed
//! sync is retried after a second; the backend then rewrites everything it owns. On
//! shutdown the backend removes its rules.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use super::backend::{Backend, ProxyError};
use super::model::ProxyState;
use super::translate::proxy_state;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name (endpoints here count as local for the Local traffic policies).
    pub node_name: String,
    /// The cluster's pod networks (`--cluster-cidr`).
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// The shortest time between two syncs (kube-proxy's `--iptables-min-sync-period`).
    pub min_sync_period: Duration,
    /// A sync at least this often, even without changes.
    pub resync_period: Duration,
}

impl ProxyConfig {
    pub fn new(node_name: &str, cluster_cidrs: Vec<Ipv4Net>) -> ProxyConfig {
        ProxyConfig { node_name: node_name.into(), cluster_cidrs, min_sync_period: Duration::from_millis(200), resync_period: Duration::from_secs(30) }
    }
}

/// Run until `shutdown` completes, then remove the backend's rules.
pub async fn run(client: kube::Client, config: ProxyConfig, backend: Box<dyn Backend>, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    let changed = Arc::new(Notify::new());
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let watch_services = watch(reflector::reflector(services_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default())), changed.clone(), "services for the service proxy");
    let watch_slices = watch(reflector::reflector(slices_writer, watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())), changed.clone(), "endpointslices for the service proxy");
    let backend = Arc::new(Mutex::new(backend));
    let syncing = sync_loop(&config, &services, &slices, &changed, backend.clone());
    tokio::select! {
        () = shutdown => {}
        () = watch_services => {}
        () = watch_slices => {}
        () = syncing => {}
    }
    tracing::info!("service proxy: removing its rules");
    tokio::task::spawn_blocking(move || backend.lock().expect("backend lock").cleanup()).await.map_err(|e| ProxyError::Setup(format!("cleanup task: {e}")))?
}

/// Drive a reflector's stream (which keeps its store) and wake `changed` at every event;
/// watch errors are logged and retried with backoff.
pub(crate) async fn watch<K, S>(stream: S, changed: Arc<Notify>, what: &'static str)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream.default_backoff());
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!("watching {what}: {e}"),
        }
    }
}

async fn sync_loop(config: &ProxyConfig, services: &Store<Service>, slices: &Store<EndpointSlice>, changed: &Notify, backend: Arc<Mutex<Box<dyn Backend>>>) {
    // The first sync waits for both initial lists, so it never removes rules of services
    // whose slices have not been read yet.
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let mut last: Option<Instant> = None;
    loop {
        if let Some(at) = last {
            tokio::time::sleep_until((at + config.min_sync_period).into()).await;
        }
        let state = snapshot(config, services, slices);
        let started = Instant::now();
        let b = backend.clone();
        let outcome = tokio::task::spawn_blocking(move || b.lock().expect("backend lock").sync(&state)).await;
        last = Some(Instant::now());
        match outcome {
            Ok(Ok(report)) => tracing::debug!(full = report.full, changed = report.changed, took = ?started.elapsed(), "service proxy: synced"),
            Ok(Err(e)) => {
                tracing::warn!("service proxy: sync failed (retrying): {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => tracing::warn!("service proxy: sync task: {e}"),
        }
        let _ = tokio::time::timeout(config.resync_period, changed.notified()).await;
    }
}

fn snapshot(config: &ProxyConfig, services: &Store<Service>, slices: &Store<EndpointSlice>) -> ProxyState {
    let services = services.state();
    let slices = slices.state();
    proxy_state(&config.node_name, &config.cluster_cidrs, services.iter().map(|s| s.as_ref()), slices.iter().map(|s| s.as_ref()))
}
