//! The watch cache: an in-memory copy of a backend that itself implements `Store`, so the API
//! server's gets, lists and watches never reach SQLite or etcd. It lists the backend once, then
//! follows one watch of every key; it keeps the current objects and a ring of the last
//! `history` events. A watch from before the ring is `Compacted` (the API server's 410
//! Expired, after which clients relist). Writes go to the backend and return once the cache
//! has applied their revision, so a client reads its own writes. A list at an older revision
//! (a later page of a paged list) falls through to the backend, which keeps history longer.
//! When the backend's watch breaks, the cache relists and follows again; watches it serves
//! that cannot be continued across that gap end with `Compacted`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Event, KeyValue, ListResult, Result, Revision, StorageError, Store, WatchStream};

/// How long a write waits for its own event before giving up (the write itself stands).
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request naming a revision the cache has not reached yet waits for it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(3);
/// How many events one watch takes from the ring per wakeup.
const WATCH_BATCH: usize = 256;
const RELIST_BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct CachedStore {
    shared: Arc<Shared>,
    follower: JoinHandle<()>,
}

struct Shared {
    inner: Arc<dyn Store>,
    history: usize,
    state: RwLock<State>,
    /// The revision the cache has applied; watches and waiting writers subscribe.
    applied: watch::Sender<Revision>,
    closed: AtomicBool,
}

struct State {
    items: BTreeMap<String, KeyValue>,
    revision: Revision,
    /// The last `history` events, oldest first; every event after `floor` is here.
    events: VecDeque<Event>,
    floor: Revision,
    /// Bumped by a relist that changed something: watches from before it cannot continue.
    epoch: u64,
}

impl CachedStore {
    /// List `inner`, then follow it. `history` is how many events watches can replay.
    pub async fn new(inner: Arc<dyn Store>, history: usize) -> Result<Arc<CachedStore>> {
        let listed = inner.list("", None, 0, 0).await?;
        let state = State {
            items: listed.items.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
            revision: listed.revision,
            events: VecDeque::with_capacity(history.min(4096)),
            floor: listed.revision,
            epoch: 0,
        };
        let (applied, _) = watch::channel(listed.revision);
        let shared =
            Arc::new(Shared { inner, history: history.max(1), state: RwLock::new(state), applied, closed: AtomicBool::new(false) });
        let follower = tokio::spawn(follow(shared.clone()));
        Ok(Arc::new(CachedStore { shared, follower }))
    }
}

impl Drop for CachedStore {
    fn drop(&mut self) {
        self.follower.abort();
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wake the watches so they see `closed` and end.
        self.shared.applied.send_modify(|_| {});
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, event: Event) {
        let revision = event.revision();
        {
            let mut state = self.write();
            if revision <= state.revision {
                return; // already seen (a backend may repeat the boundary event)
            }
            match &event {
                Event::Put { kv, .. } => {
                    state.items.insert(kv.key.clone(), kv.clone());
                }
                Event::Delete { key, .. } => {
                    state.items.remove(key);
                }
            }
            state.events.push_back(event);
            while state.events.len() > self.history {
                if let Some(dropped) = state.events.pop_front() {
                    state.floor = dropped.revision();
                }
            }
            state.revision = revision;
        }
        self.applied.send_replace(revision);
    }

    /// Replace the contents with a fresh list. Watches continue only if nothing changed.
    fn reset(&self, listed: ListResult) {
        let revision = listed.revision;
        {
            let mut state = self.write();
            let items: BTreeMap<String, KeyValue> = listed.items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
            if revision == state.revision && items == state.items {
                return;
            }
            state.items = items;
            state.revision = revision;
            state.events.clear();
            state.floor = revision;
            state.epoch += 1;
        }
        self.applied.send_replace(revision);
    }

    /// Wait until the cache has applied `revision`; false on timeout or close.
    async fn caught_up(&self, revision: Revision, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let wait = applied.wait_for(|applied| *applied >= revision || self.closed.load(Ordering::SeqCst));
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_))) && !self.closed.load(Ordering::SeqCst)
    }

    async fn after_write(&self, kv: KeyValue, doing: &str) -> Result<KeyValue> {
        if self.caught_up(kv.mod_revision, APPLY_TIMEOUT).await {
            return Ok(kv);
        }
        Err(StorageError::Backend {
            context: format!("{doing} {}", kv.key),
            message: format!(
                "the write committed at revision {} but the watch cache did not see it within {:?}; reads may not show it yet",
                kv.mod_revision, APPLY_TIMEOUT
            ),
        })
    }
}

/// Follow the backend's watch from the cache's revision; relist when it breaks.
async fn follow(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let from = shared.read().revision;
        match shared.inner.watch("", from).await {
            Ok(mut events) => {
                while let Some(item) = events.next().await {
                    match item {
                        Ok(event) => {
                            shared.apply(event);
                            backoff = Duration::from_millis(100);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "watch cache: the backend's watch failed; relisting");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "watch cache: cannot watch the backend; relisting"),
        }
        // The watch ended or failed: whatever happened meanwhile is learned by listing.
        loop {
            match shared.inner.list("", None, 0, 0).await {
                Ok(listed) => {
                    shared.reset(listed);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "watch cache: relisting the backend failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RELIST_BACKOFF_MAX);
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

fn range<'a>(items: &'a BTreeMap<String, KeyValue>, prefix: &'a str, start_after: Option<&'a str>) -> impl Iterator<Item = &'a KeyValue> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
        _ => Bound::Included(prefix.to_string()),
    };
    items.range((lower, Bound::Unbounded)).map(|(_, kv)| kv).take_while(move |kv| kv.key.starts_with(prefix))
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.read().items.get(key).cloned())
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, revision: Revision) -> Result<ListResult> {
        if revision > self.shared.read().revision && !self.shared.caught_up(revision, CATCH_UP_TIMEOUT).await {
            let current = self.shared.read().revision;
            return Err(StorageError::FutureRevision { requested: revision, current });
        }
        {
            let state = self.shared.read();
            if revision == 0 || revision == state.revision {
                let take = if limit > 0 { limit + 1 } else { usize::MAX };
                let mut items: Vec<KeyValue> = range(&state.items, prefix, start_after).take(take).cloned().collect();
                let more = limit > 0 && items.len() > limit;
                items.truncate(if limit > 0 { limit } else { items.len() });
                return Ok(ListResult { items, revision: state.revision, more });
            }
        }
        // An older snapshot (a later page): the backend keeps that history.
        self.shared.inner.list(prefix, start_after, limit, revision).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let kv = self.shared.inner.create(key, value).await?;
        self.shared.after_write(kv, "creating").await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let kv = self.shared.inner.update(key, value, expected).await?;
        self.shared.after_write(kv, "updating").await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let kv = self.shared.inner.delete(key, expected).await?;
        self.shared.after_write(kv, "deleting").await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        if after > self.shared.read().revision && !self.shared.caught_up(after, CATCH_UP_TIMEOUT).await {
            let current = self.shared.read().revision;
            return Err(StorageError::FutureRevision { requested: after, current });
        }
        let (last, epoch) = {
            let state = self.shared.read();
            if after < state.floor {
                return Err(StorageError::Compacted { requested: after, compacted: state.floor });
            }
            (after, state.epoch)
        };
        let state = CacheWatch {
            shared: self.shared.clone(),
            applied: self.shared.applied.subscribe(),
            prefix: prefix.to_string(),
            last,
            epoch,
            buffered: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(stream::unfold(state, CacheWatch::next)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.read().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.shared.inner.compact(revision).await?;
        // The same contract as the backend's: no watch from before `revision`.
        let mut state = self.shared.write();
        let floor = revision.min(state.revision);
        if floor > state.floor {
            state.floor = floor;
            while state.events.front().is_some_and(|e| e.revision() <= floor) {
                state.events.pop_front();
            }
        }
        Ok(())
    }
}

struct CacheWatch {
    shared: Arc<Shared>,
    applied: watch::Receiver<Revision>,
    prefix: String,
    last: Revision,
    epoch: u64,
    buffered: VecDeque<Event>,
    done: bool,
}

impl CacheWatch {
    async fn next(mut self) -> Option<(Result<Event>, CacheWatch)> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done || self.shared.closed.load(Ordering::SeqCst) {
                return None;
            }
            self.applied.borrow_and_update();
            if let Err(err) = self.take_from_ring() {
                self.done = true;
                return Some((Err(err), self));
            }
            if self.buffered.is_empty() && self.applied.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Move the ring's events after `last` (up to a batch) into `buffered`.
    fn take_from_ring(&mut self) -> Result<()> {
        let state = self.shared.read();
        if state.epoch != self.epoch || self.last < state.floor {
            return Err(StorageError::Compacted { requested: self.last, compacted: state.floor });
        }
        let start = state.events.partition_point(|e| e.revision() <= self.last);
        let mut taken = 0;
        for event in state.events.range(start..) {
            if taken == WATCH_BATCH {
                return Ok(());
            }
            self.last = event.revision();
            if event.key().starts_with(&self.prefix) {
                self.buffered.push_back(event.clone());
                taken += 1;
            }
        }
        self.last = self.last.max(state.revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::SqliteStore;

    async fn cached(history: usize) -> (tempfile::TempDir, Arc<CachedStore>) {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        (dir, CachedStore::new(inner, history).await.unwrap())
    }

    #[tokio::test]
    async fn a_watch_from_before_the_ring_is_compacted_and_one_inside_it_replays() {
        let (_dir, cache) = cached(3).await;
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(cache.create(&format!("/k/{i}"), vec![]).await.unwrap().mod_revision);
        }
        // The ring holds the last 3 events: a watch needs `after` >= the 2nd revision.
        match cache.watch("", revs[0]).await {
            Err(StorageError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (revs[0], revs[1])),
            other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
        }
        let mut watch = cache.watch("", revs[1]).await.unwrap();
        for expected in &revs[2..] {
            let event = watch.next().await.unwrap().unwrap();
            assert_eq!(event.revision(), *expected);
        }
    }

    #[tokio::test]
    async fn a_list_at_an_older_revision_falls_through_to_the_backend() {
        let (_dir, cache) = cached(100).await;
        let first = cache.create("/a", b"1".to_vec()).await.unwrap();
        cache.update("/a", b"2".to_vec(), first.mod_revision).await.unwrap();
        let old = cache.list("/", None, 0, first.mod_revision).await.unwrap();
        assert_eq!(old.items[0].value, b"1");
        let now = cache.list("/", None, 0, 0).await.unwrap();
        assert_eq!(now.items[0].value, b"2");
    }

    #[tokio::test]
    async fn a_relist_that_changed_something_ends_the_watches_with_compacted() {
        let (_dir, cache) = cached(100).await;
        cache.create("/a", vec![]).await.unwrap();
        let mut watch = cache.watch("", cache.current_revision().await.unwrap()).await.unwrap();
        // What the follower does after the backend's watch broke and changes were missed.
        let rev = cache.current_revision().await.unwrap();
        cache.shared.reset(ListResult { items: vec![], revision: rev + 5, more: false });
        let next = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap();
        assert!(matches!(next, Some(Err(StorageError::Compacted { .. }))), "{next:?}");
        assert_eq!(cache.get("/a").await.unwrap(), None);
    }

    /// A backend whose first watch ends after two events, as a dropped etcd connection would.
    struct BreakingWatch {
        inner: SqliteStore,
        watches: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for BreakingWatch {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, revision: Revision) -> Result<ListResult> {
            self.inner.list(prefix, start_after, limit, revision).await
        }
        async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
            self.inner.update(key, value, expected).await
        }
        async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
            let watch = self.inner.watch(prefix, after).await?;
            if self.watches.fetch_add(1, Ordering::SeqCst) == 0 {
                return Ok(Box::pin(watch.take(2)));
            }
            Ok(watch)
        }
        async fn current_revision(&self) -> Result<Revision> {
            self.inner.current_revision().await
        }
        async fn compact(&self, revision: Revision) -> Result<()> {
            self.inner.compact(revision).await
        }
    }

    #[tokio::test]
    async fn when_the_backends_watch_breaks_the_cache_relists_and_follows_again() {
        let dir = tempfile::tempdir().unwrap();
        let inner = BreakingWatch { inner: SqliteStore::open(&dir.path().join("db")).unwrap(), watches: Default::default() };
        let inner = Arc::new(inner);
        let cache = CachedStore::new(inner.clone(), 100).await.unwrap();
        let mut before_break = cache.watch("", 0).await.unwrap();
        for i in 0..6 {
            // Each write returns only once the cache has it, across the break too.
            cache.create(&format!("/k/{i}"), vec![]).await.unwrap();
        }
        assert!(inner.watches.load(Ordering::SeqCst) >= 2, "the cache must have watched again");
        assert_eq!(cache.list("/k/", None, 0, 0).await.unwrap().items.len(), 6);
        // The watch from before the break either continues without a gap (the relist found
        // nothing new) or, if the relist skipped events, ends with Compacted: never a silent gap.
        let mut seen = Vec::new();
        while seen.len() < 6 {
            match tokio::time::timeout(Duration::from_secs(5), before_break.next()).await.unwrap() {
                Some(Ok(event)) => seen.push(event.revision()),
                Some(Err(StorageError::Compacted { .. })) => break,
                other => panic!("expected events or Compacted after the break, got {other:?}"),
            }
        }
        assert!(seen.len() >= 2);
        assert_eq!(seen, (1..=seen.len() as Revision).collect::<Vec<_>>());
        // Watches after the relist are live.
        let mut after = cache.watch("", cache.current_revision().await.unwrap()).await.unwrap();
        let kv = cache.create("/k/new", vec![]).await.unwrap();
        assert_eq!(after.next().await.unwrap().unwrap(), Event::Put { kv, prev: None });
    }
}
