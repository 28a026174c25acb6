//! Keeps the records current from the API server and serves them: reflectors over Services
//! and EndpointSlices in all namespaces, a rebuild after each burst of changes, swapped into
//! the running server.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;

use super::upstream::DEFAULT_UPSTREAM_TIMEOUT;
use super::zone::{DEFAULT_CLUSTER_DOMAIN, DEFAULT_TTL};
use super::{DnsError, DnsServer, Records, Upstreams, Zone};

/// The first change opens a window this long; everything in it is one rebuild (a rollout
/// touches many slices). Bounds both the rebuild rate and how stale an answer can be.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(100);

/// How the cluster DNS runs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to serve, UDP and TCP (the kubelet's `clusterDNS` address, port 53).
    pub listen: SocketAddr,
    /// The kubelet's `clusterDomain`.
    pub cluster_domain: String,
    /// Upstream resolvers for names outside the zone (`nameserver` lines).
    pub resolv_conf: PathBuf,
    /// TTL of answers and of negative answers.
    pub ttl: u32,
    /// How long each upstream gets before the next is tried.
    pub upstream_timeout: Duration,
    /// Bind `listen` even when its address is not on the node yet (IP_FREEBIND).
    pub nonlocal_bind: bool,
    /// How long after a change the records are rebuilt, taking in changes meanwhile.
    pub coalesce: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53)),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            ttl: DEFAULT_TTL,
            nonlocal_bind: false,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            coalesce: DEFAULT_COALESCE,
        }
    }
}

/// Binds `config.listen`, then serves the cluster zone from the API server until `shutdown`.
/// The client needs list and watch on `services` and `endpointslices.discovery.k8s.io` in
/// all namespaces; until both have been listed, names in the zone get SERVFAIL. Watch
/// errors are logged and retried with backoff; the error returned is a bind failure, an
/// unreadable resolv.conf, an invalid cluster domain, or a failed listening socket.
pub async fn run(client: kube::Client, config: DnsConfig, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
    let server = if config.nonlocal_bind { DnsServer::bind_nonlocal(config.listen).await? } else { DnsServer::bind(config.listen).await? };
    run_on(client, config, server, shutdown).await
}

/// As [`run`], on sockets already bound (to learn the address first; `config.listen` is
/// then unused).
pub async fn run_on(client: kube::Client, config: DnsConfig, server: DnsServer, shutdown: impl Future<Output = ()>) -> Result<(), DnsError> {
    let zone = Zone::new(&config.cluster_domain, config.ttl)?;
    let upstream = Upstreams::from_resolv_conf(&config.resolv_conf, config.upstream_timeout)?.without(server.local_addr());
    let (records_tx, records_rx) = watch::channel(Arc::new(Records::unsynced(zone.clone())));
    tokio::select! {
        result = server.serve(records_rx, upstream, shutdown) => result,
        never = keep_records(client, zone, config.coalesce, records_tx) => match never {},
    }
}

/// What one event from either watch means for the records.
enum Change {
    /// Something was applied or deleted (or a relist is in progress).
    Touched,
    /// A (re)list of this kind finished: its store is complete.
    Listed(Kind),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Services,
    Slices,
}

async fn keep_records(client: kube::Client, zone: Zone, coalesce: Duration, records: watch::Sender<Arc<Records>>) -> Infallible {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(services_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff())
        .map(|event| event.map(|e| change(&e, Kind::Services)));
    let slice_events = reflector::reflector(slices_writer, watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff())
        .map(|event| event.map(|e| change(&e, Kind::Slices)));
    let events = futures::stream::select(service_events, slice_events);
    rebuild_on_changes(events, coalesce, || {
        let services: Vec<Arc<Service>> = Store::state(&services);
        let slices: Vec<Arc<EndpointSlice>> = Store::state(&slices);
        let built = Records::build(zone.clone(), services.iter().map(AsRef::as_ref), slices.iter().map(AsRef::as_ref));
        records.send_replace(Arc::new(built));
        tracing::debug!(services = services.len(), slices = slices.len(), "cluster DNS records rebuilt");
    })
    .await
}

fn change<K>(event: &watcher::Event<K>, kind: Kind) -> Change {
    match event {
        watcher::Event::InitDone => Change::Listed(kind),
        _ => Change::Touched,
    }
}

/// Calls `rebuild` `coalesce` after a change, once for all the changes in that window, once
/// both kinds have been listed; watch errors are logged (the watchers retry with backoff).
async fn rebuild_on_changes<S, E>(events: S, coalesce: Duration, mut rebuild: impl FnMut()) -> Infallible
where
    S: Stream<Item = Result<Change, E>>,
    E: std::fmt::Display,
{
    futures::pin_mut!(events);
    let mut listed = Listed::default();
    loop {
        let Some(first) = events.next().await else { return std::future::pending().await };
        listed.note(first);
        let quiet = tokio::time::sleep(coalesce);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                () = &mut quiet => break,
                event = events.next() => match event {
                    Some(event) => listed.note(event),
                    None => break,
                },
            }
        }
        if listed.services && listed.slices {
            rebuild();
        }
    }
}

/// Which kinds have been listed once: until both have, the records would be partial.
#[derive(Default)]
struct Listed {
    services: bool,
    slices: bool,
}

impl Listed {
    fn note<E: std::fmt::Display>(&mut self, event: Result<Change, E>) {
        match event {
            Ok(Change::Listed(Kind::Services)) => self.services = true,
            Ok(Change::Listed(Kind::Slices)) => self.slices = true,
            Ok(Change::Touched) => {}
            Err(e) => tracing::warn!(error = %e, "cluster DNS: watching services or endpointslices failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc;
    use tokio_stream_shim::Receiver;

    use super::*;

    /// An mpsc receiver as a stream, without another crate.
    mod tokio_stream_shim {
        pub struct Receiver<T>(pub tokio::sync::mpsc::UnboundedReceiver<T>);
        impl<T> futures::Stream for Receiver<T> {
            type Item = T;
            fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }

    type Event = Result<Change, String>;

    #[tokio::test(start_paused = true)]
    async fn rebuilds_once_per_burst_and_only_after_both_lists() {
        let (tx, rx) = mpsc::unbounded_channel::<Event>();
        let rebuilds = Arc::new(AtomicUsize::new(0));
        let counter = rebuilds.clone();
        let task = tokio::spawn(rebuild_on_changes(Receiver(rx), Duration::from_millis(100), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(150));

        tx.send(Ok(Change::Touched)).unwrap();
        tx.send(Ok(Change::Listed(Kind::Services))).unwrap();
        settle().await;
        assert_eq!(rebuilds.load(Ordering::SeqCst), 0, "slices not listed yet");

        tx.send(Ok(Change::Listed(Kind::Slices))).unwrap();
        settle().await;
        assert_eq!(rebuilds.load(Ordering::SeqCst), 1);

        for _ in 0..15 {
            tx.send(Ok(Change::Touched)).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(Err("watch failed".to_string())).unwrap();
        settle().await;
        assert_eq!(rebuilds.load(Ordering::SeqCst), 2, "one window, one rebuild");
        task.abort();
    }
}
