//! The SQLite schema and its queries: a kine-like log. Every write (create, update, delete) is
//! one row of `log` whose `id` is the write's revision; a key's current value is its row with
//! the highest id (the `(key, id)` index finds it), a delete is a tombstone row, and the state
//! at any past revision is "per key, the highest row at or below it". Compaction deletes the
//! rows no state at or after the compaction revision can see. Everything here is synchronous
//! and runs on the store's worker thread.

use rusqlite::types::{ToSql, Value};
use rusqlite::{params, Connection, OptionalExtension};

use crate::storage::{prefix_end, Event, KeyValue, Revision, StorageError};

/// Bumped when the schema changes; `prepare` refuses files from a newer version.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE log (
    id INTEGER PRIMARY KEY,            -- the write's revision
    key BLOB NOT NULL,                 -- BLOB so range bounds compare bytewise
    deleted INTEGER NOT NULL,          -- 1: a tombstone
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,    -- the key's previous row (0 for a create)
    value BLOB NOT NULL                -- for a tombstone: the value it deleted
);
CREATE INDEX log_key_id ON log (key, id);
-- current: the last revision handed out (its row may be compacted away);
-- compacted: the last compaction revision.
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('current', 0), ('compacted', 0);
";

#[derive(thiserror::Error, Debug)]
pub(super) enum LogError {
    /// A contract outcome (NotFound, Conflict, Compacted...), passed to the caller as is.
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{doing}: {source}")]
    Sql { doing: &'static str, source: rusqlite::Error },
    #[error("{0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, LogError>;

fn sql(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> LogError {
    move |source| LogError::Sql { doing, source }
}

/// The store-wide revisions, kept in memory by the worker and in `meta` on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Revisions {
    pub current: Revision,
    pub compacted: Revision,
}

/// Set the durability pragmas, create or check the schema, and read the revisions.
pub(super) fn prepare(conn: &Connection) -> Result<Revisions> {
    // WAL: readers never block the writer. synchronous=FULL: a commit returns only after the
    // WAL is fsynced, so an acknowledged write survives a crash or power loss.
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql("setting journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Corrupt(format!("the file refuses WAL mode (journal_mode is {mode})")));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .map_err(sql("setting synchronous=FULL"))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql("reading the schema version"))?;
    match version {
        0 => {
            let has_tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(sql("inspecting the file"))?;
            if has_tables > 0 {
                return Err(LogError::Corrupt("the file holds tables but is not an apiserver-lite store".into()));
            }
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                .map_err(sql("creating the schema"))?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(LogError::Corrupt(format!(
                "schema version {other} is not supported (this build knows version {SCHEMA_VERSION})"
            )))
        }
    }
    read_revisions(conn)
}

pub(super) fn read_revisions(conn: &Connection) -> Result<Revisions> {
    let get = |name: &str| -> Result<Revision> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
            .map_err(sql("reading the store's revisions"))
    };
    Ok(Revisions { current: get("current")?, compacted: get("compacted")? })
}

pub(super) fn write_revisions(conn: &Connection, revs: &Revisions) -> Result<()> {
    conn.execute(
        "UPDATE meta SET value = CASE name WHEN 'current' THEN ?1 ELSE ?2 END WHERE name IN ('current', 'compacted')",
        params![revs.current, revs.compacted],
    )
    .map_err(sql("recording the store's revisions"))?;
    Ok(())
}

/// A key's latest row, tombstone or not.
struct Row {
    id: Revision,
    deleted: bool,
    create_revision: Revision,
    value: Vec<u8>,
}

fn latest(conn: &Connection, key: &str) -> Result<Option<Row>> {
    conn.prepare_cached("SELECT id, deleted, create_revision, value FROM log WHERE key = ?1 ORDER BY id DESC LIMIT 1")
        .and_then(|mut stmt| {
            stmt.query_row([key.as_bytes()], |r| {
                Ok(Row { id: r.get(0)?, deleted: r.get(1)?, create_revision: r.get(2)?, value: r.get(3)? })
            })
            .optional()
        })
        .map_err(sql("reading a key's latest row"))
}

fn live(conn: &Connection, key: &str) -> Result<Option<Row>> {
    Ok(latest(conn, key)?.filter(|row| !row.deleted))
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(live(conn, key)?.map(|row| KeyValue {
        key: key.to_string(),
        value: row.value,
        create_revision: row.create_revision,
        mod_revision: row.id,
    }))
}

fn append(
    conn: &Connection,
    revs: &mut Revisions,
    key: &str,
    deleted: bool,
    create_revision: Option<Revision>,
    prev_revision: Revision,
    value: &[u8],
) -> Result<Revision> {
    let id = revs.current + 1;
    conn.prepare_cached(
        "INSERT INTO log (id, key, deleted, create_revision, prev_revision, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![id, key.as_bytes(), deleted, create_revision.unwrap_or(id), prev_revision, value])
    })
    .map_err(sql("appending to the log"))?;
    // Only now: a failed insert must not use up the revision.
    revs.current = id;
    Ok(id)
}

pub(super) fn create(conn: &Connection, revs: &mut Revisions, key: &str, value: Vec<u8>) -> Result<KeyValue> {
    if live(conn, key)?.is_some() {
        return Err(StorageError::AlreadyExists { key: key.to_string() }.into());
    }
    let id = append(conn, revs, key, false, None, 0, &value)?;
    Ok(KeyValue { key: key.to_string(), value, create_revision: id, mod_revision: id })
}

/// The key's live row if its mod revision is `expected` (any, when `None`).
fn expect(conn: &Connection, key: &str, expected: Option<Revision>) -> Result<Row> {
    let row = live(conn, key)?.ok_or_else(|| StorageError::NotFound { key: key.to_string() })?;
    match expected {
        Some(expected) if expected != row.id => {
            Err(StorageError::Conflict { key: key.to_string(), expected, actual: row.id }.into())
        }
        _ => Ok(row),
    }
}

pub(super) fn update(
    conn: &Connection,
    revs: &mut Revisions,
    key: &str,
    value: Vec<u8>,
    expected: Revision,
) -> Result<KeyValue> {
    let row = expect(conn, key, Some(expected))?;
    let id = append(conn, revs, key, false, Some(row.create_revision), row.id, &value)?;
    Ok(KeyValue { key: key.to_string(), value, create_revision: row.create_revision, mod_revision: id })
}

pub(super) fn delete(conn: &Connection, revs: &mut Revisions, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
    let row = expect(conn, key, expected)?;
    let id = append(conn, revs, key, true, Some(row.create_revision), row.id, &row.value)?;
    Ok(KeyValue { key: key.to_string(), value: row.value, create_revision: row.create_revision, mod_revision: id })
}

/// Check that `revision` (0: the current one) can be read; returns the revision to read at.
pub(super) fn readable(revs: &Revisions, revision: Revision) -> Result<Revision> {
    if revision == 0 {
        return Ok(revs.current);
    }
    if revision < revs.compacted {
        return Err(StorageError::Compacted { requested: revision, compacted: revs.compacted }.into());
    }
    if revision > revs.current {
        return Err(StorageError::FutureRevision { requested: revision, current: revs.current }.into());
    }
    Ok(revision)
}

/// Bounds on `column` for rows under `prefix` (and after `start_after`): SQL and parameters.
fn key_range(column: &str, prefix: &str, start_after: Option<&str>) -> (String, Vec<(&'static str, Value)>) {
    let mut sql = format!("{column} >= :lo");
    let mut params = vec![(":lo", Value::Blob(prefix.as_bytes().to_vec()))];
    if let Some(end) = prefix_end(prefix.as_bytes()) {
        sql.push_str(&format!(" AND {column} < :hi"));
        params.push((":hi", Value::Blob(end)));
    }
    if let Some(after) = start_after {
        sql.push_str(&format!(" AND {column} > :after"));
        params.push((":after", Value::Blob(after.as_bytes().to_vec())));
    }
    (sql, params)
}

fn named<'a>(params: &'a [(&'static str, Value)]) -> Vec<(&'static str, &'a dyn ToSql)> {
    params.iter().map(|(name, value)| (*name, value as &dyn ToSql)).collect()
}

fn utf8(key: Vec<u8>) -> Result<String> {
    String::from_utf8(key).map_err(|e| LogError::Corrupt(format!("a key is not UTF-8: {e}")))
}

/// The live keys under `prefix` after `start_after` as of `revision` (already checked with
/// `readable`), at most `limit` (0: all); the flag says whether more matched.
pub(super) fn list(
    conn: &Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Revision,
) -> Result<(Vec<KeyValue>, bool)> {
    let (range, mut params) = key_range("key", prefix, start_after);
    let limit_sql = if limit > 0 { format!("LIMIT {}", limit + 1) } else { String::new() };
    let query = format!(
        "SELECT l.key, l.value, l.create_revision, l.id FROM log l
         WHERE l.id IN (SELECT MAX(id) FROM log WHERE id <= :rev AND {range} GROUP BY key)
           AND l.deleted = 0
         ORDER BY l.key {limit_sql}"
    );
    params.push((":rev", Value::Integer(revision)));
    let rows: Vec<(Vec<u8>, Vec<u8>, Revision, Revision)> = conn
        .prepare_cached(&query)
        .and_then(|mut stmt| {
            stmt.query_map(named(&params).as_slice(), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(sql("listing keys"))?;
    let more = limit > 0 && rows.len() > limit;
    let items = rows
        .into_iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .map(|(key, value, create_revision, mod_revision)| {
            Ok(KeyValue { key: utf8(key)?, value, create_revision, mod_revision })
        })
        .collect::<Result<_>>()?;
    Ok((items, more))
}

/// The changes under `prefix` with `after < revision <= upto`, oldest first, at most `limit`.
/// The caller checks `after` against the compaction revision first.
pub(super) fn events(conn: &Connection, prefix: &str, after: Revision, upto: Revision, limit: usize) -> Result<Vec<Event>> {
    let (range, mut params) = key_range("l.key", prefix, None);
    let query = format!(
        "SELECT l.id, l.key, l.deleted, l.create_revision, l.prev_revision, l.value, p.create_revision, p.value
         FROM log l LEFT JOIN log p ON p.id = l.prev_revision AND l.prev_revision > 0
         WHERE l.id > :from AND l.id <= :upto AND {range}
         ORDER BY l.id LIMIT {limit}"
    );
    params.push((":from", Value::Integer(after)));
    params.push((":upto", Value::Integer(upto)));
    type EventRow = (Revision, Vec<u8>, bool, Revision, Revision, Vec<u8>, Option<Revision>, Option<Vec<u8>>);
    let rows: Vec<EventRow> = conn
        .prepare_cached(&query)
        .and_then(|mut stmt| {
            stmt.query_map(named(&params).as_slice(), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })?
            .collect::<rusqlite::Result<_>>()
        })
        .map_err(sql("reading the log for a watch"))?;
    rows.into_iter()
        .map(|(id, key, deleted, create_revision, prev_revision, value, prev_create, prev_value)| {
            let key = utf8(key)?;
            if deleted {
                // A tombstone carries the value it deleted.
                let prev = KeyValue { key: key.clone(), value, create_revision, mod_revision: prev_revision };
                return Ok(Event::Delete { key, revision: id, prev });
            }
            let prev = match (prev_revision, prev_create, prev_value) {
                (0, _, _) => None,
                (rev, Some(create_revision), Some(value)) => {
                    Some(KeyValue { key: key.clone(), value, create_revision, mod_revision: rev })
                }
                (rev, _, _) => {
                    return Err(LogError::Corrupt(format!(
                        "revision {id} of {key} refers to revision {rev}, which is missing"
                    )))
                }
            };
            Ok(Event::Put { kv: KeyValue { key, value, create_revision, mod_revision: id }, prev })
        })
        .collect()
}

/// Drop the rows no state at or after `revision` can see: tombstones at or below it, and
/// rows superseded at or below it. The rows that stay are exactly each key's state at
/// `revision`, plus everything newer (so an event after it still finds its previous value).
pub(super) fn compact(conn: &Connection, revs: &mut Revisions, revision: Revision) -> Result<()> {
    if revision > revs.current {
        return Err(StorageError::FutureRevision { requested: revision, current: revs.current }.into());
    }
    if revision <= revs.compacted {
        return Ok(());
    }
    conn.execute(
        "DELETE FROM log WHERE id <= ?1 AND (deleted = 1 OR EXISTS
            (SELECT 1 FROM log n WHERE n.key = log.key AND n.id > log.id AND n.id <= ?1))",
        [revision],
    )
    .map_err(sql("compacting the log"))?;
    revs.compacted = revision;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (Connection, Revisions) {
        let conn = Connection::open_in_memory().unwrap();
        // In-memory databases cannot use WAL; the schema is what these tests are about.
        conn.execute_batch(SCHEMA).unwrap();
        let revs = read_revisions(&conn).unwrap();
        (conn, revs)
    }

    fn rows(conn: &Connection) -> Vec<(Revision, String, bool)> {
        let mut stmt = conn.prepare("SELECT id, key, deleted FROM log ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, String::from_utf8(r.get::<_, Vec<u8>>(1)?).unwrap(), r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn compaction_keeps_each_keys_state_at_the_revision_and_newer_rows() {
        let (conn, mut revs) = open();
        create(&conn, &mut revs, "/a", b"1".to_vec()).unwrap(); // 1
        update(&conn, &mut revs, "/a", b"2".to_vec(), 1).unwrap(); // 2
        create(&conn, &mut revs, "/b", b"1".to_vec()).unwrap(); // 3
        delete(&conn, &mut revs, "/b", None).unwrap(); // 4
        update(&conn, &mut revs, "/a", b"3".to_vec(), 2).unwrap(); // 5
        compact(&conn, &mut revs, 4).unwrap();
        // /a@1 superseded by 2 (<= 4): gone; /a@2 is the state at 4: kept; /b's create and
        // tombstone: gone; /a@5: newer, kept.
        assert_eq!(rows(&conn), vec![(2, "/a".into(), false), (5, "/a".into(), false)]);
        let (items, _) = list(&conn, "", None, 0, readable(&revs, 4).unwrap()).unwrap();
        assert_eq!(items.iter().map(|kv| (&kv.value[..], kv.mod_revision)).collect::<Vec<_>>(), vec![(&b"2"[..], 2)]);
        // The event at 5 still carries its previous value.
        let evs = events(&conn, "", 4, 5, 10).unwrap();
        match &evs[..] {
            [Event::Put { prev: Some(prev), .. }] => assert_eq!(prev.value, b"2"),
            other => panic!("unexpected events {other:?}"),
        }
        assert!(matches!(readable(&revs, 3), Err(LogError::Storage(StorageError::Compacted { requested: 3, compacted: 4 }))));
    }

    #[test]
    fn list_at_a_past_revision_sees_deleted_keys_and_old_values() {
        let (conn, mut revs) = open();
        create(&conn, &mut revs, "/x", b"1".to_vec()).unwrap();
        create(&conn, &mut revs, "/y", b"1".to_vec()).unwrap();
        delete(&conn, &mut revs, "/x", Some(1)).unwrap();
        update(&conn, &mut revs, "/y", b"2".to_vec(), 2).unwrap();
        let at = |rev| list(&conn, "/", None, 0, rev).unwrap().0.into_iter().map(|kv| (kv.key, kv.value)).collect::<Vec<_>>();
        assert_eq!(at(2), vec![("/x".to_string(), b"1".to_vec()), ("/y".to_string(), b"1".to_vec())]);
        assert_eq!(at(4), vec![("/y".to_string(), b"2".to_vec())]);
        assert_eq!(get(&conn, "/x").unwrap(), None);
    }

    #[test]
    fn a_newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db")).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        let err = prepare(&conn).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
