//! Container lifecycle events for `GetContainerEvents`: created, started, stopped, deleted,
//! in that order for each container, on a broadcast channel every subscriber reads.
//!
//! A container stops on its own, so its STOPPED event comes from whoever first sees its exit
//! file: a watcher thread that looks every [`EXIT_POLL`], or `stop`/`remove` when they end
//! it. [`EventBus::lock`] keeps the set of containers whose stop was reported; holding it
//! while checking and sending makes the stop reported once, and before the deletion.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

/// How often the watcher looks for exits.
pub const EXIT_POLL: Duration = Duration::from_millis(200);
/// Events a slow subscriber may fall behind before it misses some.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

impl EventKind {
    pub fn to_cri(self) -> cri_api::runtime::v1::ContainerEventType {
        use cri_api::runtime::v1::ContainerEventType as T;
        match self {
            EventKind::Created => T::ContainerCreatedEvent,
            EventKind::Started => T::ContainerStartedEvent,
            EventKind::Stopped => T::ContainerStoppedEvent,
            EventKind::Deleted => T::ContainerDeletedEvent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub sandbox_id: String,
    pub kind: EventKind,
    /// Nanoseconds since the epoch.
    pub at_ns: i64,
}

/// The channel, and which containers' stops were reported.
pub struct EventBus {
    sender: broadcast::Sender<ContainerEvent>,
    stopped: Mutex<HashSet<String>>,
}

/// The reported stops, held while deciding whether to report one.
pub struct Reported<'a> {
    bus: &'a EventBus,
    stopped: MutexGuard<'a, HashSet<String>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { sender: broadcast::channel(CAPACITY).0, stopped: Mutex::new(HashSet::new()) }
    }
}

impl EventBus {
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.sender.subscribe()
    }

    /// Sends an event; nobody listening is fine.
    pub fn emit(&self, container_id: &str, sandbox_id: &str, kind: EventKind) {
        let at_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        let _ = self.sender.send(ContainerEvent { container_id: container_id.into(), sandbox_id: sandbox_id.into(), kind, at_ns });
    }

    pub fn lock(&self) -> Reported<'_> {
        Reported { bus: self, stopped: self.stopped.lock().expect("events lock") }
    }
}

impl Reported<'_> {
    /// Reports the container's stop unless it was already reported.
    pub fn stopped(&mut self, container_id: &str, sandbox_id: &str) {
        if self.stopped.insert(container_id.to_string()) {
            self.bus.emit(container_id, sandbox_id, EventKind::Stopped);
        }
    }

    pub fn has_stopped(&self, container_id: &str) -> bool {
        self.stopped.contains(container_id)
    }

    /// Marks a stop as known without an event (containers that ended before we started).
    pub fn already_stopped(&mut self, container_id: &str) {
        self.stopped.insert(container_id.to_string());
    }

    /// Reports the deletion (after the stop, if that was not reported yet).
    pub fn deleted(&mut self, container_id: &str, sandbox_id: &str) {
        self.stopped(container_id, sandbox_id);
        self.bus.emit(container_id, sandbox_id, EventKind::Deleted);
        self.stopped.remove(container_id);
    }
}

/// Runs `poll` on `target` every `interval` on a thread of its own, until `target` is
/// dropped.
pub fn spawn_watcher<T: Send + Sync + 'static>(target: Weak<T>, interval: Duration, poll: fn(&T)) -> std::io::Result<()> {
    std::thread::Builder::new().name("exit-watcher".into()).spawn(move || {
        loop {
            std::thread::sleep(interval);
            let Some(t) = target.upgrade() else { return };
            poll(&t);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn drain(rx: &mut broadcast::Receiver<ContainerEvent>) -> Vec<(String, EventKind)> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|e| (e.container_id, e.kind)).collect()
    }

    #[test]
    fn a_stop_is_reported_once_and_before_the_deletion() {
        let bus = EventBus::default();
        let mut rx = bus.subscribe();
        bus.emit("c1", "p", EventKind::Created);
        bus.emit("c1", "p", EventKind::Started);
        bus.lock().stopped("c1", "p");
        bus.lock().stopped("c1", "p");
        bus.lock().deleted("c1", "p");
        // Removed without a stop seen first: the stop comes before the deletion.
        bus.lock().deleted("c2", "p");
        use EventKind::*;
        let want: Vec<(String, EventKind)> =
            [("c1", Created), ("c1", Started), ("c1", Stopped), ("c1", Deleted), ("c2", Stopped), ("c2", Deleted)]
                .into_iter()
                .map(|(c, k)| (c.to_string(), k))
                .collect();
        assert_eq!(drain(&mut rx), want);
        // A container that ended before we started is not reported again.
        bus.lock().already_stopped("c3");
        bus.lock().stopped("c3", "p");
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn the_watcher_polls_until_its_target_is_dropped() {
        let target = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        spawn_watcher(Arc::downgrade(&target), Duration::from_millis(5), |t| {
            t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(target.load(std::sync::atomic::Ordering::SeqCst) > 2);
        drop(target);
    }

    #[test]
    fn kinds_map_to_the_cri_types() {
        use cri_api::runtime::v1::ContainerEventType as T;
        assert_eq!(EventKind::Created.to_cri(), T::ContainerCreatedEvent);
        assert_eq!(EventKind::Deleted.to_cri(), T::ContainerDeletedEvent);
    }
}
