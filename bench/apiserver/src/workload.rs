//! The workload, the same for every target, in order: resident memory at rest; N creates
//! from C concurrent clients; memory with the N pods stored; N gets from C clients; full
//! lists; lists in pages; watch latency (a watcher open while creates go one at a time);
//! memory after a few idle seconds, and the peak.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::backend::{Backend, BackendError, Watch};
use crate::rss::{self, Memory, RssError};
use crate::stats::Samples;

#[derive(thiserror::Error, Debug)]
pub enum WorkloadError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("memory of pid {pid}: {source}")]
    Memory { pid: u32, source: RssError },
    #[error("{what}: listed {got} pods, {expected} were created")]
    WrongCount { what: &'static str, got: usize, expected: usize },
    #[error("watch: no event for {missing} of the {total} pods created within {timeout:?}")]
    WatchTimeout { missing: usize, total: usize, timeout: Duration },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub creates: usize,
    pub concurrency: usize,
    pub lists: usize,
    pub page: usize,
    pub watch_events: usize,
    pub idle: Duration,
}

/// Operations done by C clients at once: how long all took, and each one's latency.
#[derive(Debug, Clone)]
pub struct Phase {
    pub count: usize,
    pub wall: Duration,
    pub latency: Samples,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64()
    }
}

/// Memory of one process at each point of the run.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    pub pid: u32,
    pub at_rest: Memory,
    pub with_pods: Memory,
    pub idle: Memory,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub creates: Phase,
    pub gets: Phase,
    pub list_all: Samples,
    pub list_paged: Samples,
    pub pages: usize,
    /// From the create's response to the watcher's event (negative: the event came first).
    pub watch_ack_to_event: Samples,
    /// From sending the create to the watcher's event.
    pub watch_send_to_event: Samples,
    pub memory: Vec<ProcessMemory>,
}

fn memory(pids: &[u32]) -> Result<Vec<Memory>, WorkloadError> {
    pids.iter().map(|&pid| rss::read(pid).map_err(|source| WorkloadError::Memory { pid, source })).collect()
}

/// `count` operations `op(i)`, i = 0..count, from `clients` clients each waiting for its
/// answer before its next request (a closed loop, like controllers).
async fn concurrently<F, Fut>(count: usize, clients: usize, op: F) -> Result<Phase, BackendError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), BackendError>>,
{
    let next = Cell::new(0);
    let start = Instant::now();
    let client = || async {
        let mut latencies = Vec::new();
        loop {
            let i = next.get();
            if i >= count {
                return Ok::<_, BackendError>(latencies);
            }
            next.set(i + 1);
            let t = Instant::now();
            op(i).await?;
            latencies.push(t.elapsed());
        }
    };
    let all = futures_util::future::try_join_all((0..clients.max(1)).map(|_| client())).await?;
    let wall = start.elapsed();
    Ok(Phase { count, wall, latency: Samples::from_durations(&all.concat()) })
}

pub fn pod_name(i: usize) -> String {
    format!("bench-{i:06}")
}

/// Get order: a fixed permutation of 0..n (a stride coprime with n), so gets do not walk
/// the keys in creation order.
fn get_order(i: usize, n: usize) -> usize {
    let stride = (7919..).find(|s| gcd(*s, n) == 1).unwrap_or(1);
    (i * stride) % n
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

async fn timed_lists<B: Backend>(b: &B, runs: usize, page: Option<usize>, expected: usize) -> Result<(Samples, usize), WorkloadError> {
    let mut times = Vec::new();
    let mut pages = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let listed = b.list(page).await?;
        times.push(t.elapsed());
        if listed.items != expected {
            return Err(WorkloadError::WrongCount { what: if page.is_some() { "paged list" } else { "list" }, got: listed.items, expected });
        }
        pages = listed.pages;
    }
    Ok((Samples::from_durations(&times), pages))
}

/// Creates one at a time with a watch open; the watcher runs alongside, stamping each
/// event as it arrives (not when the writer gets round to it).
async fn watch_latency<B: Backend>(b: &B, events: usize) -> Result<(Samples, Samples), WorkloadError> {
    const TIMEOUT: Duration = Duration::from_secs(60);
    let mut watch = b.watch().await?;
    let names: Vec<String> = (0..events).map(|i| format!("watch-{i:05}")).collect();
    let arrived: std::cell::RefCell<HashMap<String, Instant>> = Default::default();
    let writer = async {
        let mut sent = Vec::new();
        for name in &names {
            let t = Instant::now();
            b.create(name).await?;
            sent.push((t, Instant::now()));
        }
        Ok::<_, WorkloadError>(sent)
    };
    let reader = async {
        while arrived.borrow().len() < events {
            let name = watch.next_added().await?;
            arrived.borrow_mut().insert(name, Instant::now());
        }
        Ok::<_, WorkloadError>(())
    };
    let reader = async {
        match tokio::time::timeout(TIMEOUT, reader).await {
            Ok(r) => r,
            Err(_) => Err(WorkloadError::WatchTimeout { missing: events - arrived.borrow().len(), total: events, timeout: TIMEOUT }),
        }
    };
    let (sent, ()) = tokio::try_join!(writer, reader)?;
    let arrived = arrived.into_inner();
    let (mut ack, mut send) = (Vec::new(), Vec::new());
    for (name, (t_send, t_ack)) in names.iter().zip(sent) {
        let t_event = arrived[name];
        let signed = |from: Instant| if t_event >= from { (t_event - from).as_secs_f64() * 1e3 } else { -((from - t_event).as_secs_f64() * 1e3) };
        ack.push(signed(t_ack));
        send.push(signed(t_send));
    }
    Ok((Samples::from_millis(ack), Samples::from_millis(send)))
}

pub async fn run<B: Backend>(b: &B, config: &Config, pids: &[u32]) -> Result<Report, WorkloadError> {
    let at_rest = memory(pids)?;
    b.prepare().await?;
    let n = config.creates;
    eprintln!("  {n} creates from {} clients...", config.concurrency);
    let creates = concurrently(n, config.concurrency, |i| async move { b.create(&pod_name(i)).await }).await?;
    let with_pods = memory(pids)?;
    eprintln!("  {n} gets...");
    let gets = concurrently(n, config.concurrency, |i| async move { b.get(&pod_name(get_order(i, n))).await }).await?;
    eprintln!("  {} lists of all, {} in pages of {}...", config.lists, config.lists, config.page);
    let (list_all, _) = timed_lists(b, config.lists, None, n).await?;
    let (list_paged, pages) = timed_lists(b, config.lists, Some(config.page), n).await?;
    eprintln!("  watch: {} creates one at a time...", config.watch_events);
    let (watch_ack_to_event, watch_send_to_event) = watch_latency(b, config.watch_events).await?;
    tokio::time::sleep(config.idle).await;
    let idle = memory(pids)?;
    let memory = pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| ProcessMemory { pid, at_rest: at_rest[i], with_pods: with_pods[i], idle: idle[i] })
        .collect();
    Ok(Report { creates, gets, list_all, list_paged, pages, watch_ack_to_event, watch_send_to_event, memory })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_order_visits_every_pod_once() {
        for n in [1, 7, 7919, 10_000, 15_838] {
            let mut seen: Vec<usize> = (0..n).map(|i| get_order(i, n)).collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_clients_do_every_operation_once() {
        let done = std::cell::RefCell::new(Vec::new());
        let phase = concurrently(50, 4, |i| {
            let done = &done;
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                done.borrow_mut().push(i);
                Ok(())
            }
        })
        .await
        .unwrap();
        let mut done = done.into_inner();
        done.sort();
        assert_eq!(done, (0..50).collect::<Vec<_>>());
        assert_eq!((phase.count, phase.latency.as_slice().len()), (50, 50));
        // The clients overlapped: all took less wall time than their latencies add up to.
        let total: f64 = phase.latency.as_slice().iter().sum();
        assert!(phase.wall.as_secs_f64() * 1e3 < total / 2.0, "{:?} for {total} ms of latencies", phase.wall);
        assert!(phase.latency.p50().unwrap() >= 1.0);
    }
}
