//! Periodic compaction: without it a store's history (SQLite rows, etcd revisions) grows
//! forever. Like kube-apiserver, each round compacts at the revision the previous round saw,
//! so at least one interval of history always stays for watches and paged lists.

use std::sync::Arc;
use std::time::Duration;

use super::{Revision, Store};

/// Compact `store` every `every`, forever (spawn it; abort the task to stop). Failures are
/// logged and retried next round: compaction is an optimisation, never a reason to stop.
pub async fn compact_periodically(store: Arc<dyn Store>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<Revision> = None;
    loop {
        ticker.tick().await;
        if let Some(revision) = seen.filter(|r| *r > 0)
            && let Err(err) = store.compact(revision).await
        {
            tracing::warn!(error = %err, revision, "periodic compaction failed; retrying next round");
        }
        match store.current_revision().await {
            Ok(revision) => seen = Some(revision),
            Err(err) => tracing::warn!(error = %err, "periodic compaction: reading the current revision failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::SqliteStore;
    use crate::storage::StorageError;

    #[tokio::test]
    async fn history_older_than_one_interval_is_compacted_and_values_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let first = store.create("/a", b"1".to_vec()).await.unwrap();
        store.update("/a", b"2".to_vec(), first.mod_revision).await.unwrap();
        let compactor = tokio::spawn(compact_periodically(store.clone(), Duration::from_millis(50)));
        // One round records the revision, the next compacts at it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match store.list("/", None, 0, first.mod_revision).await {
                Err(StorageError::Compacted { compacted, .. }) => {
                    assert_eq!(compacted, 2);
                    break;
                }
                Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("expected the history to be compacted, got {other:?}"),
            }
        }
        compactor.abort();
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"2");
    }
}
