//! The thread that owns the SQLite connection. Requests are closures run inside a
//! transaction; the worker batches whatever is queued into one transaction (one fsync for
//! many writers) and answers only after the commit, then publishes the committed revision
//! for watches.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use super::log::{self, LogError, Revisions};
use crate::storage::{Result, Revision, StorageError};

/// The most requests one transaction takes, so a flood of writers still gets answers
/// (and watches their events) in bounded steps.
const MAX_BATCH: usize = 256;

/// A request's answer, sent once the batch's commit is known (`Some`: the commit failed).
type Reply = Box<dyn FnOnce(Option<&StorageError>) + Send>;
/// Runs a request inside the batch's transaction, or (`None`) learns it cannot be run.
type Job = Box<dyn FnOnce(Option<(&Connection, &mut Revisions)>) -> Reply + Send>;

enum Message {
    Job(Job),
    Shutdown,
}

pub(super) struct Worker {
    path: PathBuf,
    jobs: mpsc::Sender<Message>,
    committed: watch::Receiver<Revision>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(super) fn log_error(path: &Path, doing: &str, err: LogError) -> StorageError {
    match err {
        LogError::Storage(err) => err,
        other => super::backend(path, doing, other),
    }
}

impl Worker {
    /// Start the thread; it owns `conn` and the held `lock` until shutdown.
    pub(super) fn start(path: PathBuf, conn: Connection, revs: Revisions, lock: std::fs::File) -> Result<Worker> {
        let (jobs, queue) = mpsc::channel();
        let (publish, committed) = watch::channel(revs.current);
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-store".into())
            .spawn(move || {
                run(&thread_path, conn, revs, queue, publish);
                // Only after the connection is closed may another opener take over.
                drop(lock);
            })
            .map_err(|e| super::backend(&path, "starting the worker thread", e))?;
        Ok(Worker { path, jobs, committed, thread: Mutex::new(Some(thread)) })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver of the last committed revision; it errors once the store is closed.
    pub(super) fn committed(&self) -> watch::Receiver<Revision> {
        self.committed.clone()
    }

    /// Run `f` on the worker inside a transaction; `doing` names it in backend errors.
    pub(super) async fn call<T, F>(&self, doing: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Revisions) -> std::result::Result<T, LogError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let path = self.path.clone();
        let job: Job = Box::new(move |txn| {
            let result = txn.map(|(conn, revs)| f(conn, revs));
            Box::new(move |commit_failed: Option<&StorageError>| {
                let result = match (commit_failed, result) {
                    (Some(err), _) => Err(err.clone()),
                    (None, Some(result)) => result.map_err(|e| log_error(&path, doing, e)),
                    (None, None) => Err(super::backend(&path, doing, "the request was not run")),
                };
                let _ = tx.send(result);
            })
        });
        let closed = || super::backend(&self.path, doing, "the store is closed");
        self.jobs.send(Message::Job(job)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Stop the thread after the queued requests and wait for it (so the lock is free
    /// when this returns).
    pub(super) fn shutdown(&self) {
        let _ = self.jobs.send(Message::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for super::SqliteStore {
    fn drop(&mut self) {
        self.worker.shutdown();
    }
}

fn run(path: &Path, mut conn: Connection, mut revs: Revisions, queue: mpsc::Receiver<Message>, publish: watch::Sender<Revision>) {
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { return };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => batch.push(job),
                Message::Shutdown => stopping = true,
            }
            if !stopping && batch.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let before = revs;
        let (replies, committed) = run_batch(&mut conn, &mut revs, batch);
        match committed {
            Ok(()) => {
                for reply in replies {
                    reply(None);
                }
                if revs.current != before.current {
                    publish.send_replace(revs.current);
                }
            }
            Err(err) => {
                let err = log_error(path, "committing", err);
                tracing::error!(error = %err, "sqlite store: a transaction failed; its requests get the error");
                // Nothing of the batch is on disk: forget the revisions it handed out.
                revs = log::read_revisions(&conn).unwrap_or(before);
                for reply in replies {
                    reply(Some(&err));
                }
            }
        }
    }
}

fn run_batch(conn: &mut Connection, revs: &mut Revisions, batch: Vec<Job>) -> (Vec<Reply>, std::result::Result<(), LogError>) {
    let before = *revs;
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(source) => {
            let replies = batch.into_iter().map(|job| job(None)).collect();
            return (replies, Err(LogError::Sql { doing: "starting a transaction", source }));
        }
    };
    let replies: Vec<Reply> = batch.into_iter().map(|job| job(Some((&tx, &mut *revs)))).collect();
    let result = (|| {
        if *revs != before {
            log::write_revisions(&tx, revs)?;
        }
        tx.commit().map_err(|source| LogError::Sql { doing: "committing", source })
    })();
    (replies, result)
}
