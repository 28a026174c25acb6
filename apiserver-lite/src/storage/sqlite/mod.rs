//! The embedded backend: one SQLite file holding a log of every write (see `log.rs`).
//!
//! One process owns the file: `open` takes an exclusive lock on `<file>.lock` (released by the
//! kernel when the process dies, so a crash never leaves a stale lock) and refuses a second
//! opener. Watches are therefore fed in-process: after each commit the worker publishes the
//! new revision and every watch reads the log past its last revision.
//!
//! All SQLite work runs on one dedicated worker thread, never on the async runtime. The worker
//! takes every request waiting in its queue and runs them in one transaction, so concurrent
//! writers share one fsync (group commit); replies go out only after the commit, so an
//! acknowledged write is on disk.

mod log;
mod worker;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream;
use tokio::sync::watch;

use self::log::Revisions;
use self::worker::Worker;
use super::{Event, KeyValue, ListResult, Result, Revision, StorageError, Store, WatchStream};

/// How many log rows one watch reads per round trip to the worker.
const WATCH_BATCH: usize = 512;

/// Dropping the store finishes the queued requests, closes the file and releases the lock
/// before returning (a short blocking wait); its watches then end.
pub struct SqliteStore {
    worker: Arc<Worker>,
}

impl SqliteStore {
    /// Open (creating if needed) the store in `path`; fails if another process (or another
    /// `SqliteStore` in this one) has it open.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let lock = lock(path)?;
        let conn = rusqlite::Connection::open(path).map_err(|e| backend(path, "opening the database", e))?;
        let revs = log::prepare(&conn).map_err(|e| worker::log_error(path, "opening the database", e))?;
        let worker = Worker::start(path.to_path_buf(), conn, revs, lock)?;
        Ok(SqliteStore { worker: Arc::new(worker) })
    }

    pub fn path(&self) -> &Path {
        self.worker.path()
    }
}

fn backend(path: &Path, doing: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Backend { context: format!("sqlite store {}: {doing}", path.display()), message: err.to_string() }
}

/// The lock file next to the database: `<file>.lock`, holding the owner's pid for the error
/// message a second opener gets.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn lock(path: &Path) -> Result<File> {
    let lock_path = lock_path(path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| backend(path, &format!("creating the lock file {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let owner = if owner.is_empty() { "another process".to_string() } else { format!("process {owner}") };
            return Err(backend(
                path,
                "opening the database",
                format!(
                    "it is already open in {owner} (lock {}); one process owns a SQLite store, use etcd to share storage",
                    lock_path.display()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(backend(path, &format!("locking {}", lock_path.display()), e));
        }
    }
    let pid = std::process::id().to_string();
    let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(pid.as_bytes()));
    written.map_err(|e| backend(path, &format!("writing the lock file {}", lock_path.display()), e))?;
    Ok(file)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.worker.call("reading a key", move |conn, _| log::get(conn, &key)).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, revision: Revision) -> Result<ListResult> {
        let (prefix, start_after) = (prefix.to_string(), start_after.map(str::to_string));
        self.worker
            .call("listing keys", move |conn, revs| {
                let revision = log::readable(revs, revision)?;
                let (items, more) = log::list(conn, &prefix, start_after.as_deref(), limit, revision)?;
                Ok(ListResult { items, revision, more })
            })
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let key = key.to_string();
        self.worker.call("creating a key", move |conn, revs| log::create(conn, revs, &key, value)).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let key = key.to_string();
        self.worker.call("updating a key", move |conn, revs| log::update(conn, revs, &key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let key = key.to_string();
        self.worker.call("deleting a key", move |conn, revs| log::delete(conn, revs, &key, expected)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let revs = self.worker.call("starting a watch", |_, revs| Ok(*revs)).await?;
        check_watchable(&revs, after)?;
        let state = WatchState {
            worker: self.worker.clone(),
            prefix: prefix.to_string(),
            last: after,
            committed: self.worker.committed(),
            buffered: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(stream::unfold(state, WatchState::next)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.worker.call("reading the current revision", |_, revs| Ok(revs.current)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.worker.call("compacting", move |conn, revs| log::compact(conn, revs, revision)).await
    }
}

fn check_watchable(revs: &Revisions, after: Revision) -> Result<()> {
    if after < revs.compacted {
        return Err(StorageError::Compacted { requested: after, compacted: revs.compacted });
    }
    if after > revs.current {
        return Err(StorageError::FutureRevision { requested: after, current: revs.current });
    }
    Ok(())
}

/// One watch: reads the log past `last` whenever the worker publishes a newer commit.
struct WatchState {
    worker: Arc<Worker>,
    prefix: String,
    last: Revision,
    committed: watch::Receiver<Revision>,
    buffered: VecDeque<Event>,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<Event>, WatchState)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.buffered.pop_front() {
                return Some((Ok(event), self));
            }
            let upto = *self.committed.borrow_and_update();
            if upto > self.last {
                let (prefix, after) = (self.prefix.clone(), self.last);
                let read = self
                    .worker
                    .call("reading the log for a watch", move |conn, revs| {
                        // Compaction may have passed this watch while it waited.
                        check_watchable(revs, after)?;
                        log::events(conn, &prefix, after, upto, WATCH_BATCH)
                    })
                    .await;
                match read {
                    Ok(events) => {
                        // A short read reached `upto`; a full one continues after its last event.
                        self.last = match events.last() {
                            Some(last) if events.len() == WATCH_BATCH => last.revision(),
                            _ => upto,
                        };
                        self.buffered.extend(events);
                    }
                    Err(err) => {
                        self.done = true;
                        return Some((Err(err), self));
                    }
                }
                continue;
            }
            // The sender goes away when the store is closed: the watch ends.
            if self.committed.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_open_is_refused_naming_the_file_and_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let first = SqliteStore::open(&path).unwrap();
        let err = SqliteStore::open(&path).err().expect("a second open must fail");
        let msg = err.to_string();
        assert!(msg.contains("store.db") && msg.contains("already open") && msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        // Closing releases the lock.
        SqliteStore::open(&path).unwrap();
    }

    #[tokio::test]
    async fn a_closed_store_ends_its_watches() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let mut watch = store.watch("", 0).await.unwrap();
        drop(store);
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next()).await.unwrap();
        assert!(matches!(next, None | Some(Err(StorageError::Backend { .. }))), "{next:?}");
    }
}
