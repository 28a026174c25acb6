//! One conformance suite for every storage backend: the same checks run against SQLite (in a
//! tempdir), etcd (Debian's /usr/bin/etcd started on free loopback ports) and the watch cache
//! over each. Then SQLite's own promises: a reopened file and a SIGKILLed writer keep every
//! acknowledged write.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver_lite::storage::cache::CachedStore;
use apiserver_lite::storage::sqlite::SqliteStore;
use apiserver_lite::storage::{Event, KeyValue, Revision, StorageError, Store, WatchStream};
use futures_util::StreamExt;

mod common;
use common::etcd::EtcdProcess;


#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Etcd,
    CachedSqlite,
    CachedEtcd,
}

/// A store and what must live as long as it: its directory, the etcd process.
struct Fixture {
    store: Arc<dyn Store>,
    // Dropped in this order: the store, then etcd (killed), then the directory.
    _etcd: Option<EtcdProcess>,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Fixture {
    let dir = tempfile::tempdir().expect("creating a tempdir");
    match backend {
        Backend::Sqlite => {
            let store = SqliteStore::open(&dir.path().join("store.db")).expect("opening the SQLite store");
            Fixture { store: Arc::new(store), _etcd: None, _dir: dir }
        }
        Backend::CachedSqlite => {
            let inner = SqliteStore::open(&dir.path().join("store.db")).expect("opening the SQLite store");
            let store = CachedStore::new(Arc::new(inner), 1000).await.expect("starting the watch cache");
            Fixture { store, _etcd: None, _dir: dir }
        }
        Backend::Etcd => {
            let etcd = EtcdProcess::start(dir.path());
            let store = etcd.connect("/kubelet-rs-test").await;
            Fixture { store: Arc::new(store), _etcd: Some(etcd), _dir: dir }
        }
        Backend::CachedEtcd => {
            let etcd = EtcdProcess::start(dir.path());
            let inner = etcd.connect("/kubelet-rs-test").await;
            let store = CachedStore::new(Arc::new(inner), 1000).await.expect("starting the watch cache");
            Fixture { store, _etcd: Some(etcd), _dir: dir }
        }
    }
}

async fn run<F, Fut>(backend: Backend, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let fixture = fixture(backend).await;
    check(fixture.store.clone()).await;
}


macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        suite!(@backend sqlite, Sqlite, $($check),*);
        suite!(@backend etcd, Etcd, $($check),*);
        suite!(@backend cached_sqlite, CachedSqlite, $($check),*);
        suite!(@backend cached_etcd, CachedEtcd, $($check),*);
    };
    (@backend $module:ident, $backend:ident, $($check:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::run(super::Backend::$backend, super::$check).await
                }
            )*
        }
    };
}

suite!(
    create_then_get,
    create_of_an_existing_key_is_already_exists,
    update_with_a_stale_revision_is_a_conflict_carrying_the_current_one,
    update_of_a_missing_key_is_not_found,
    delete_with_and_without_an_expected_revision,
    list_is_in_key_order_and_a_prefix_does_not_match_longer_names,
    paging_at_a_fixed_revision_is_a_snapshot_while_writes_continue,
    watch_replays_from_a_past_revision_then_goes_live_with_prev_values,
    watch_and_list_before_a_compaction_are_compacted,
    revisions_strictly_increase_across_keys,
    a_future_revision_is_refused,
    twenty_concurrent_creates_of_one_key_one_wins,
);

// ---- the checks ----

async fn create_then_get(s: Arc<dyn Store>) {
    let kv = s.create("/r/a/x", b"one".to_vec()).await.unwrap();
    assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("/r/a/x", &b"one"[..]));
    assert!(kv.mod_revision > 0);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.get("/r/a/x").await.unwrap(), Some(kv));
    assert_eq!(s.get("/r/a/missing").await.unwrap(), None);
}

async fn create_of_an_existing_key_is_already_exists(s: Arc<dyn Store>) {
    let first = s.create("/k", b"1".to_vec()).await.unwrap();
    let err = s.create("/k", b"2".to_vec()).await.unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists { key: "/k".into() });
    assert_eq!(s.get("/k").await.unwrap().unwrap().value, b"1");
    // Once deleted, the key can be created again, with a new create revision.
    s.delete("/k", None).await.unwrap();
    let again = s.create("/k", b"3".to_vec()).await.unwrap();
    assert!(again.create_revision > first.create_revision);
}

async fn update_with_a_stale_revision_is_a_conflict_carrying_the_current_one(s: Arc<dyn Store>) {
    let v1 = s.create("/u", b"1".to_vec()).await.unwrap();
    let v2 = s.update("/u", b"2".to_vec(), v1.mod_revision).await.unwrap();
    assert_eq!(v2.create_revision, v1.create_revision);
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(s.get("/u").await.unwrap(), Some(v2.clone()));
    let err = s.update("/u", b"3".to_vec(), v1.mod_revision).await.unwrap_err();
    assert_eq!(err, StorageError::Conflict { key: "/u".into(), expected: v1.mod_revision, actual: v2.mod_revision });
    assert_eq!(s.get("/u").await.unwrap().unwrap().value, b"2");
}

async fn update_of_a_missing_key_is_not_found(s: Arc<dyn Store>) {
    let err = s.update("/never", b"x".to_vec(), 1).await.unwrap_err();
    assert_eq!(err, StorageError::NotFound { key: "/never".into() });
    // Expected revision 0 must not create it either.
    let err = s.update("/never", b"x".to_vec(), 0).await.unwrap_err();
    assert_eq!(err, StorageError::NotFound { key: "/never".into() });
    let kv = s.create("/gone", b"x".to_vec()).await.unwrap();
    s.delete("/gone", None).await.unwrap();
    let err = s.update("/gone", b"y".to_vec(), kv.mod_revision).await.unwrap_err();
    assert_eq!(err, StorageError::NotFound { key: "/gone".into() });
    assert_eq!(s.get("/never").await.unwrap(), None);
}

async fn delete_with_and_without_an_expected_revision(s: Arc<dyn Store>) {
    let a1 = s.create("/d/a", b"1".to_vec()).await.unwrap();
    let a2 = s.update("/d/a", b"2".to_vec(), a1.mod_revision).await.unwrap();
    let err = s.delete("/d/a", Some(a1.mod_revision)).await.unwrap_err();
    assert_eq!(err, StorageError::Conflict { key: "/d/a".into(), expected: a1.mod_revision, actual: a2.mod_revision });
    assert!(s.get("/d/a").await.unwrap().is_some(), "a conflicting delete must not delete");

    let deleted = s.delete("/d/a", Some(a2.mod_revision)).await.unwrap();
    assert_eq!((deleted.value.as_slice(), deleted.create_revision), (&b"2"[..], a1.create_revision));
    assert!(deleted.mod_revision > a2.mod_revision, "the delete's own revision");
    assert_eq!(s.get("/d/a").await.unwrap(), None);

    let b = s.create("/d/b", b"b".to_vec()).await.unwrap();
    let deleted = s.delete("/d/b", None).await.unwrap();
    assert_eq!(deleted.value, b"b");
    assert!(deleted.mod_revision > b.mod_revision);
    assert_eq!(s.delete("/d/b", None).await.unwrap_err(), StorageError::NotFound { key: "/d/b".into() });
    assert_eq!(s.delete("/d/b", Some(b.mod_revision)).await.unwrap_err(), StorageError::NotFound { key: "/d/b".into() });
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn list_is_in_key_order_and_a_prefix_does_not_match_longer_names(s: Arc<dyn Store>) {
    for key in ["/r/a/c", "/r/ab/x", "/r/a/a", "/r/a0", "/r/b/x", "/r/a/b", "/q/a/a"] {
        s.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let listed = s.list("/r/a/", None, 0, 0).await.unwrap();
    assert_eq!(keys(&listed.items), ["/r/a/a", "/r/a/b", "/r/a/c"]);
    assert!(!listed.more);
    assert_eq!(listed.revision, s.current_revision().await.unwrap());
    let all = s.list("/r/", None, 0, 0).await.unwrap();
    assert_eq!(keys(&all.items), ["/r/a/a", "/r/a/b", "/r/a/c", "/r/a0", "/r/ab/x", "/r/b/x"]);
    let after = s.list("/r/a/", Some("/r/a/a"), 0, 0).await.unwrap();
    assert_eq!(keys(&after.items), ["/r/a/b", "/r/a/c"]);
    assert_eq!(s.list("/r/a/", Some("/r/a/c"), 0, 0).await.unwrap().items, vec![]);
    assert_eq!(keys(&s.list("", None, 0, 0).await.unwrap().items).len(), 7);
    assert_eq!(s.list("/none/", None, 0, 0).await.unwrap().items, vec![]);
}

async fn paging_at_a_fixed_revision_is_a_snapshot_while_writes_continue(s: Arc<dyn Store>) {
    let mut original = Vec::new();
    for i in 0..25 {
        original.push(s.create(&format!("/p/{i:03}"), format!("v{i}").into_bytes()).await.unwrap());
    }
    let first = s.list("/p/", None, 10, 0).await.unwrap();
    assert_eq!((first.items.len(), first.more), (10, true));
    let snapshot = first.revision;

    // Writers change the prefix while the pages are read.
    let writer = {
        let s = s.clone();
        let original = original.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                s.create(&format!("/p/{:03}", 100 + i), b"new".to_vec()).await.unwrap();
                s.create(&format!("/p/{:03}a", i), b"between".to_vec()).await.unwrap();
            }
            s.update("/p/012", b"changed".to_vec(), original[12].mod_revision).await.unwrap();
            s.delete("/p/020", None).await.unwrap();
        })
    };
    // Some writes certainly land between the pages.
    s.create("/p/015x", b"between".to_vec()).await.unwrap();
    s.delete("/p/013", None).await.unwrap();

    let mut pages = vec![first];
    while pages.last().unwrap().more {
        let after = pages.last().unwrap().items.last().unwrap().key.clone();
        let page = s.list("/p/", Some(&after), 10, snapshot).await.unwrap();
        assert_eq!(page.revision, snapshot);
        pages.push(page);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let seen: Vec<KeyValue> = pages.into_iter().flat_map(|p| p.items).collect();
    assert_eq!(seen, original, "the pages are the snapshot at {snapshot}");

    // And the current state has moved on.
    let now = s.list("/p/", None, 0, 0).await.unwrap();
    assert!(now.revision > snapshot);
    assert_eq!(now.items.len(), 25 + 20 + 20 + 1 - 2);
}

async fn next_event(watch: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(other) => panic!("the watch ended or failed: {other:?}"),
        Err(_) => panic!("no event within 10s"),
    }
}

async fn watch_replays_from_a_past_revision_then_goes_live_with_prev_values(s: Arc<dyn Store>) {
    let a1 = s.create("/w/a", b"1".to_vec()).await.unwrap();
    let a2 = s.update("/w/a", b"2".to_vec(), a1.mod_revision).await.unwrap();
    s.create("/x/outside", b"-".to_vec()).await.unwrap();
    let b = s.create("/w/b", b"b".to_vec()).await.unwrap();
    let gone = s.delete("/w/a", None).await.unwrap();

    let mut watch = s.watch("/w/", a1.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await, Event::Put { kv: a2.clone(), prev: Some(a1.clone()) });
    assert_eq!(next_event(&mut watch).await, Event::Put { kv: b.clone(), prev: None });
    assert_eq!(
        next_event(&mut watch).await,
        Event::Delete { key: "/w/a".into(), revision: gone.mod_revision, prev: a2.clone() }
    );

    // Live now: a writer in another task.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.create("/x/outside2", b"-".to_vec()).await.unwrap();
            let c = s.create("/w/c", b"c".to_vec()).await.unwrap();
            let b2 = s.update("/w/b", b"b2".to_vec(), b.mod_revision).await.unwrap();
            (c, b2, b)
        })
    };
    let c_event = next_event(&mut watch).await;
    let b_event = next_event(&mut watch).await;
    let (c, b2, b) = writer.await.unwrap();
    assert_eq!(c_event, Event::Put { kv: c, prev: None });
    assert_eq!(b_event, Event::Put { kv: b2, prev: Some(b) });

    // A watch from the current revision sees only what follows.
    let mut live = s.watch("/w/", s.current_revision().await.unwrap()).await.unwrap();
    let d = s.create("/w/d", b"d".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut live).await, Event::Put { kv: d, prev: None });
}

async fn expect_watch_compacted(s: &Arc<dyn Store>, prefix: &str, after: Revision) {
    match s.watch(prefix, after).await {
        Err(StorageError::Compacted { requested, .. }) => assert_eq!(requested, after),
        Err(other) => panic!("a watch from {after} after compaction: expected Compacted, got {other}"),
        Ok(mut watch) => match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Err(StorageError::Compacted { requested, .. }))) => assert_eq!(requested, after),
            other => panic!("a watch from {after} after compaction: expected Compacted first, got {other:?}"),
        },
    }
}

async fn watch_and_list_before_a_compaction_are_compacted(s: Arc<dyn Store>) {
    let mut kv = s.create("/c/a", b"0".to_vec()).await.unwrap();
    let mut revisions = vec![kv.mod_revision];
    for i in 1..5 {
        kv = s.update("/c/a", format!("{i}").into_bytes(), kv.mod_revision).await.unwrap();
        revisions.push(kv.mod_revision);
    }
    s.create("/c/b", b"b".to_vec()).await.unwrap();
    let at = revisions[3];
    s.compact(at).await.unwrap();

    expect_watch_compacted(&s, "/c/", revisions[0]).await;
    expect_watch_compacted(&s, "/c/", revisions[1]).await;
    match s.list("/c/", None, 0, revisions[1]).await {
        Err(StorageError::Compacted { requested, .. }) => assert_eq!(requested, revisions[1]),
        other => panic!("a list below the compaction: expected Compacted, got {other:?}"),
    }
    // The compaction revision itself still reads, and current values stay.
    let listed = s.list("/c/", None, 0, at).await.unwrap();
    assert_eq!(listed.items.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), vec![b"3".to_vec()]);
    assert_eq!(s.get("/c/a").await.unwrap().unwrap().value, b"4");
    // A watch from the compaction revision still works and has the previous values.
    let mut watch = s.watch("/c/", at).await.unwrap();
    match next_event(&mut watch).await {
        Event::Put { kv: got, prev: Some(prev) } => {
            assert_eq!((got.value, prev.value), (b"4".to_vec(), b"3".to_vec()));
        }
        other => panic!("expected the update to 4, got {other:?}"),
    }
    // Compacting again at or below is harmless; beyond the current revision is refused.
    s.compact(revisions[1]).await.unwrap();
    let current = s.current_revision().await.unwrap();
    assert!(matches!(s.compact(current + 1000).await, Err(StorageError::FutureRevision { .. })));
}

async fn revisions_strictly_increase_across_keys(s: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..10 {
        let kv = s.create(&format!("/rv/{}", i % 3 + i), b"x".to_vec()).await.unwrap();
        revisions.push(kv.mod_revision);
        let kv = s.update(&kv.key, b"y".to_vec(), kv.mod_revision).await.unwrap();
        revisions.push(kv.mod_revision);
        if i % 2 == 0 {
            revisions.push(s.delete(&kv.key, None).await.unwrap().mod_revision);
        }
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_eq!(s.current_revision().await.unwrap(), *revisions.last().unwrap());
}

async fn a_future_revision_is_refused(s: Arc<dyn Store>) {
    s.create("/f", vec![]).await.unwrap();
    let future = s.current_revision().await.unwrap() + 100;
    match s.list("/", None, 0, future).await {
        Err(StorageError::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        other => panic!("a list at a future revision: expected FutureRevision, got {other:?}"),
    }
    match s.watch("/", future).await {
        Err(StorageError::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        Err(other) => panic!("a watch from a future revision: expected FutureRevision, got {other}"),
        Ok(_) => panic!("a watch from a future revision: expected FutureRevision, got a stream"),
    }
}

async fn twenty_concurrent_creates_of_one_key_one_wins(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create("/race", format!("{i}").into_bytes()).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(kv) => winners.push(kv),
            Err(err) => assert_eq!(err, StorageError::AlreadyExists { key: "/race".into() }),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(s.get("/race").await.unwrap(), winners.pop());
}

// ---- etcd: clusters sharing one etcd ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_clusters_under_different_prefixes_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let a = etcd.connect("/cluster-a").await;
    let ab = etcd.connect("/cluster-ab").await;
    a.create("/registry/x", b"a".to_vec()).await.unwrap();
    ab.create("/registry/x", b"ab".to_vec()).await.unwrap();
    assert_eq!(keys(&a.list("", None, 0, 0).await.unwrap().items), ["/registry/x"]);
    assert_eq!(a.get("/registry/x").await.unwrap().unwrap().value, b"a");
    let mut watch = a.watch("", a.current_revision().await.unwrap()).await.unwrap();
    ab.create("/registry/y", vec![]).await.unwrap();
    let mine = a.create("/registry/y", b"mine".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut watch).await, Event::Put { kv: mine, prev: None });
    // With no prefix, a store sees every cluster's keys under their full names.
    let whole = etcd.connect("").await;
    let all = whole.list("", None, 0, 0).await.unwrap();
    assert_eq!(keys(&all.items), ["/cluster-a/registry/x", "/cluster-a/registry/y", "/cluster-ab/registry/x", "/cluster-ab/registry/y"]);
    let mut everything = whole.watch("", 0).await.unwrap();
    assert_eq!(next_event(&mut everything).await.key(), "/cluster-a/registry/x");
}

// ---- SQLite: durability ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reopen_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let kv = store.create(&format!("/dur/{w}/{i:03}"), vec![w as u8; 100]).await.unwrap();
                    if i % 10 == 0 {
                        store.update(&kv.key, b"updated".to_vec(), kv.mod_revision).await.unwrap();
                    }
                    if i % 25 == 0 {
                        store.delete(&kv.key, None).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    eprintln!("sqlite: 8 concurrent writers, 1000 writes in {:?}", started.elapsed());
    let before = store.list("", None, 0, 0).await.unwrap();
    assert_eq!(before.items.len(), 800 - 32);
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    let after = reopened.list("", None, 0, 0).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(reopened.current_revision().await.unwrap(), before.revision);
    // Revisions continue after the reopen, never reused.
    assert!(reopened.create("/dur/next", vec![]).await.unwrap().mod_revision > before.revision);
    // History survives too: the reopened store replays a watch from the start.
    let mut watch = reopened.watch("/dur/0/", 1).await.unwrap();
    assert!(matches!(next_event(&mut watch).await, Event::Put { .. }));
}

const CRASH_CHILD_ENV: &str = "APISERVER_LITE_STORAGE_CRASH_CHILD_DB";

/// The child half of the crash test: write forever, printing each acknowledged write.
async fn crash_child(path: &Path) {
    let store = Arc::new(SqliteStore::open(path).expect("child: opening the store"));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{w}/{i}");
                    let kv = store.create(&key, format!("{w}-{i}").into_bytes()).await.expect("child: create");
                    println!("ack {key} {}", kv.mod_revision);
                }
            })
        })
        .chain(std::iter::once({
            let store = store.clone();
            tokio::spawn(async move {
                let mut kv = store.create("/crash/counter", b"0".to_vec()).await.expect("child: create the counter");
                println!("ack /crash/counter {}", kv.mod_revision);
                for i in 1.. {
                    kv = store.update(&kv.key, format!("{i}").into_bytes(), kv.mod_revision).await.expect("child: update");
                    println!("ack /crash/counter {}", kv.mod_revision);
                }
            })
        }))
        .collect();
    // The parent kills us long before this; never outlive a parent that died.
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(writers);
    std::process::exit(1);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_keeps_every_acknowledged_write() {
    if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
        return crash_child(Path::new(&path)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "sqlite_sigkill_keeps_every_acknowledged_write", "--nocapture", "--test-threads", "1"])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("re-executing the test binary as the writer");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = line.strip_prefix("ack ") {
                let (key, rev) = ack.split_once(' ').expect("an ack line: key and revision");
                let _ = tx.send((key.to_string(), rev.parse::<Revision>().expect("a revision")));
            }
        }
    });
    // Let it write a while, then kill it mid-flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = Vec::new();
    while acked.len() < 1000 && Instant::now() < deadline {
        if let Ok(ack) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(ack);
        }
    }
    child.0.kill().expect("SIGKILL the writer");
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the writer must have been killed: {status}");
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(acked.len() >= 1000, "the writer acknowledged only {} writes in 30s", acked.len());

    let store = SqliteStore::open(&path).expect("reopening after the crash");
    let (counter, created): (Vec<_>, Vec<_>) = acked.iter().partition(|(key, _)| key == "/crash/counter");
    for (key, revision) in &created {
        let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acknowledged {key} at {revision} is lost"));
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
    // The counter's last acknowledged update is there (or a later, unacknowledged one).
    let last = counter.iter().map(|(_, r)| *r).max().expect("the counter was written");
    let kv = store.get("/crash/counter").await.unwrap().expect("the counter is lost");
    assert!(kv.mod_revision >= last, "the counter is at {} but {last} was acknowledged", kv.mod_revision);
    // Every acknowledged revision is in the history, in order.
    let mut history = store.watch("/crash/", 0).await.unwrap();
    let mut wanted: Vec<Revision> = acked.iter().map(|(_, r)| *r).collect();
    wanted.sort();
    let mut found = Vec::new();
    while found.len() < wanted.len() {
        let event = next_event(&mut history).await;
        if wanted.binary_search(&event.revision()).is_ok() {
            found.push(event.revision());
        }
    }
    assert_eq!(found, wanted);
    let current = store.current_revision().await.unwrap();
    assert!(current >= acked.iter().map(|(_, r)| *r).max().unwrap());
    eprintln!("sqlite crash test: {} acknowledged writes, all present after SIGKILL (current revision {current})", acked.len());
}
