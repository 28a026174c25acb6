//! Revisioned key-value storage with watch: the one thing every backend provides (SQLite
//! embedded by default, etcd v3 when a user outgrows one machine). Keys are paths such as
//! `/registry/core/pods/default/web-1`; values are the objects' JSON. Every write gets a new,
//! store-wide, strictly increasing revision, which becomes the objects' `resourceVersion`.
//!
//! Backends: [`sqlite::SqliteStore`] (one file, one owning process), [`etcd::EtcdStore`]
//! (several API servers, several clusters under distinct prefixes), and
//! [`cache::CachedStore`], the in-memory watch cache the API server puts in front of either
//! so that gets, lists and watches never reach the backend. [`compactor`] keeps history
//! bounded.

pub mod cache;
pub mod compactor;
pub mod etcd;
pub mod sqlite;

use std::pin::Pin;

use futures_util::Stream;

/// A store-wide revision. 0 means "none" / "the current one" where an argument allows it.
pub type Revision = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last change to the key.
    pub mod_revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A create (`prev` is `None`) or an update.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// `prev` is the value before the delete; `revision` is the delete's own revision.
    Delete { key: String, revision: Revision, prev: KeyValue },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (pass it back to continue a paged list consistently).
    pub revision: Revision,
    /// More keys matched beyond `limit`.
    pub more: bool,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} not found")]
    NotFound { key: String },
    /// An update or delete expected `expected` as the key's mod revision; it is `actual` (0:
    /// the key does not exist).
    #[error("{key} was modified: expected revision {expected}, the current one is {actual}")]
    Conflict { key: String, expected: Revision, actual: Revision },
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },
    /// The backend failed (I/O, SQL, etcd unreachable): `context` says what was being done.
    #[error("{context}: {message}")]
    Backend { context: String, message: String },
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Events in revision order; ends with an error (e.g. `Compacted`) or when the store closes.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The storage backend. Every method is atomic; all are safe to call concurrently.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys starting with `prefix`, in key order, strictly after `start_after` if given,
    /// at most `limit` of them (0: no limit), as of `revision` (0: the current one; an older
    /// one gives the same snapshot a paged list started with, or `Compacted`).
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, revision: Revision) -> Result<ListResult>;

    /// Create the key; `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace the value if the key's mod revision is `expected`; `Conflict` otherwise,
    /// `NotFound` if the key does not exist.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Delete the key (if `expected` is given, only at that mod revision: `Conflict`
    /// otherwise); returns the deleted value with `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every change to keys starting with `prefix` with a revision greater than `after`, in
    /// order, then live ones (`after == 0` too: every change since the store began; pass
    /// `current_revision()` for live changes only). `Compacted` (as the call's error or the
    /// stream's first item) when `after` is older than what the store keeps, i.e. below the
    /// last `compact` revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    async fn current_revision(&self) -> Result<Revision>;

    /// Forget history at or before `revision` (current values are kept): afterwards a list at
    /// a revision below it, or a watch from `after` below it, is `Compacted`. Compacting at or
    /// below an earlier compaction does nothing; above the current revision is
    /// `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// The first key after every key that starts with `prefix` (the exclusive end of the prefix's
/// range), or `None` when no such key exists (empty prefix, or all 0xff bytes).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/r/a/"), Some(b"/r/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
