//! The etcd v3 backend, for API servers that share storage. Keys live under a prefix so that
//! several clusters can share one etcd; revisions are etcd's own (store-wide, so a cluster
//! sees gaps where another wrote). Conditional writes are etcd transactions comparing a key's
//! create or mod revision, as kube-apiserver does.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures_util::stream;

use super::{prefix_end, Event, KeyValue, ListResult, Result, Revision, StorageError, Store, WatchStream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest list answer read from etcd (etcd's own request limit is far below this).
const MAX_LIST_BYTES: usize = 1 << 30;

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// Without a trailing '/'; every key adds its leading one.
    prefix: String,
    endpoints: String,
}

impl EtcdStore {
    /// Connect to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`); every key (which must
    /// start with '/') is stored as `prefix` (without a trailing '/') followed by the key, so
    /// `/clusters/a` holds `/clusters/a/registry/...`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        let joined = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(StorageError::Backend { context: "connecting to etcd".into(), message: "no endpoints given".into() });
        }
        let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect(endpoints, Some(options)).await.map_err(|e| StorageError::Backend {
            context: format!("connecting to etcd at {joined}"),
            message: e.to_string(),
        })?;
        let store = EtcdStore { client, prefix: normalize_prefix(prefix), endpoints: joined };
        // Fail now, not at the first request, if etcd does not answer.
        store.current_revision().await?;
        Ok(store)
    }

    /// The etcd key for `key`. Keys are paths: they must start with '/', which is what
    /// keeps cluster "/a" out of cluster "/ab" (its keys all start with "/a/").
    fn full(&self, key: &str) -> Result<Vec<u8>> {
        if !key.starts_with('/') {
            return Err(self.failed(&format!("using key {key:?}"), "etcd store keys must start with '/'"));
        }
        Ok(format!("{}{key}", self.prefix).into_bytes())
    }

    /// The etcd range prefix for a list or watch of `prefix` ("" is every key: "/").
    fn full_prefix(&self, prefix: &str) -> Result<Vec<u8>> {
        self.full(if prefix.is_empty() { "/" } else { prefix })
    }

    /// A key to ask etcd about the store as a whole.
    fn probe_key(&self) -> Vec<u8> {
        format!("{}/", self.prefix).into_bytes()
    }

    fn strip(&self, key: &[u8]) -> Result<String> {
        let key = std::str::from_utf8(key).map_err(|e| self.failed("reading a key", e))?;
        key.strip_prefix(&self.prefix)
            .map(str::to_string)
            .ok_or_else(|| self.failed("reading a key", format!("{key} is outside the prefix {}", self.prefix)))
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    fn failed(&self, doing: &str, err: impl std::fmt::Display) -> StorageError {
        StorageError::Backend { context: format!("etcd at {}: {doing}", self.endpoints), message: err.to_string() }
    }

    /// etcd's errors for revisions it cannot serve become the contract's; the rest `Backend`.
    async fn map_error(&self, doing: &str, requested: Revision, err: etcd_client::Error) -> StorageError {
        let message = err.to_string();
        if message.contains("required revision has been compacted") {
            return StorageError::Compacted { requested, compacted: self.compacted_revision().await.unwrap_or(0) };
        }
        if message.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            return StorageError::FutureRevision { requested, current };
        }
        self.failed(doing, message)
    }

    /// etcd has no call for "the compaction revision"; a watch from revision 1 is told it
    /// (this runs only after etcd said a revision is compacted, so the answer comes at once).
    async fn compacted_revision(&self) -> Result<Revision> {
        let doing = "probing the compaction revision";
        let options = WatchOptions::new().with_start_revision(1);
        let mut watch = self.client.clone().watch(self.probe_key(), Some(options)).await.map_err(|e| self.failed(doing, e))?;
        let probe = async {
            while let Some(response) = watch.message().await.map_err(|e| self.failed(doing, e))? {
                if response.compact_revision() > 0 {
                    return Ok(response.compact_revision());
                }
                if !response.events().is_empty() {
                    return Ok(0); // history from revision 1 exists: nothing compacted
                }
            }
            Ok(0)
        };
        tokio::time::timeout(Duration::from_secs(2), probe).await.unwrap_or(Ok(0))
    }

    async fn get_raw(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let response = self.client.clone().get(key, None).await.map_err(|e| self.failed("reading a key", e))?;
        response.kvs().first().map(|kv| self.kv(kv)).transpose()
    }

    /// After a failed compare: `NotFound` if the key is gone, `Conflict` with its revision.
    fn missed(&self, key: &str, expected: Revision, current: Option<&etcd_client::KeyValue>) -> StorageError {
        match current {
            None => StorageError::NotFound { key: key.to_string() },
            Some(kv) => StorageError::Conflict { key: key.to_string(), expected, actual: kv.mod_revision() },
        }
    }

    async fn txn(&self, doing: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.client.clone().txn(txn).await.map_err(|e| self.failed(doing, e))
    }
}

/// The store prefix without trailing '/': keys (which start with '/') are appended to it.
fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_end_matches('/').to_string()
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

/// The first `Get` (or `Put`/`Delete`) response of a transaction's branch.
fn first_get(responses: &[TxnOpResponse]) -> Option<&etcd_client::GetResponse> {
    responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => Some(get),
        _ => None,
    })
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.get_raw(&self.full(key)?).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, revision: Revision) -> Result<ListResult> {
        let from = self.full_prefix(prefix)?;
        let end = prefix_end(&from).unwrap_or_else(|| vec![0]);
        let start = match start_after.map(|after| self.full(after)).transpose()? {
            Some(mut after) if after >= from => {
                after.push(0); // the first key strictly after
                after
            }
            _ => from,
        };
        let mut options = GetOptions::new().with_range(end).with_revision(revision);
        if limit > 0 {
            options = options.with_limit(limit as i64 + 1);
        }
        // A whole prefix can be far above the gRPC client's 4 MiB default (the watch cache's
        // first list of a cluster): let a list answer be as large as etcd sends.
        let response = match self.client.kv_client().max_decoding_message_size(MAX_LIST_BYTES).get(start, Some(options)).await {
            Ok(response) => response,
            Err(err) => return Err(self.map_error("listing keys", revision, err).await),
        };
        let mut items = response.kvs().iter().map(|kv| self.kv(kv)).collect::<Result<Vec<_>>>()?;
        let more = limit > 0 && items.len() > limit;
        items.truncate(if limit > 0 { limit } else { items.len() });
        let revision = if revision > 0 { revision } else { header_revision(response.header()) };
        Ok(ListResult { items, revision, more })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let full = self.full(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.clone(), None)]);
        let response = self.txn("creating a key", txn).await?;
        if !response.succeeded() {
            return Err(StorageError::AlreadyExists { key: key.to_string() });
        }
        let revision = header_revision(response.header());
        Ok(KeyValue { key: key.to_string(), value, create_revision: revision, mod_revision: revision })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let full = self.full(key)?;
        let txn = Txn::new()
            .when([
                // A missing key's mod revision is 0: without this, expected 0 would create it.
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(full.clone(), value.clone(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn("updating a key", txn).await?;
        let responses = response.op_responses();
        if !response.succeeded() {
            let current = first_get(&responses).and_then(|get| get.kvs().first());
            return Err(self.missed(key, expected, current));
        }
        let create_revision = responses
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| self.failed("updating a key", "etcd did not return the previous value"))?;
        let revision = header_revision(response.header());
        Ok(KeyValue { key: key.to_string(), value, create_revision, mod_revision: revision })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.full(key)?;
        let delete = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let mut compares = vec![Compare::create_revision(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(full.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new().when(compares).and_then([delete]).or_else([TxnOp::get(full, None)]);
        let response = self.txn("deleting a key", txn).await?;
        let responses = response.op_responses();
        if !response.succeeded() {
            let current = first_get(&responses).and_then(|get| get.kvs().first());
            return Err(self.missed(key, expected.unwrap_or(0), current));
        }
        let prev = responses
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| self.failed("deleting a key", "etcd did not return the deleted value"))?;
        let mut deleted = self.kv(&prev)?;
        deleted.mod_revision = header_revision(response.header());
        Ok(deleted)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // etcd would wait for a future revision; the contract refuses it, as a list does.
        let current = self.current_revision().await?;
        if after > current {
            return Err(StorageError::FutureRevision { requested: after, current });
        }
        let from = self.full_prefix(prefix)?;
        let end = prefix_end(&from).unwrap_or_else(|| vec![0]);
        let mut options = WatchOptions::new().with_prev_key().with_range(end);
        // etcd's start revision is inclusive (and 0 would mean "now").
        options = options.with_start_revision(after + 1);
        let watch = match self.client.clone().watch(from, Some(options)).await {
            Ok(watch) => watch,
            Err(err) => return Err(self.map_error("starting a watch", after, err).await),
        };
        let state = EtcdWatch { store: self.clone(), watch, after, buffered: VecDeque::new(), done: false };
        Ok(Box::pin(stream::unfold(state, EtcdWatch::next)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .client
            .clone()
            .get(self.probe_key(), Some(options))
            .await
            .map_err(|e| self.failed("reading the current revision", e))?;
        Ok(header_revision(response.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Physical: return once the history is gone, so what follows sees it gone.
        let options = CompactionOptions::new().with_physical();
        match self.client.clone().compact(revision, Some(options)).await {
            Ok(_) => Ok(()),
            Err(err) => match self.map_error("compacting", revision, err).await {
                // Compacting at or below an earlier compaction is a no-op by contract.
                StorageError::Compacted { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

struct EtcdWatch {
    store: EtcdStore,
    watch: etcd_client::WatchStream,
    after: Revision,
    buffered: VecDeque<Result<Event>>,
    done: bool,
}

impl EtcdWatch {
    async fn next(mut self) -> Option<(Result<Event>, EtcdWatch)> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                self.done |= item.is_err();
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let response = match self.watch.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return None,
                Err(err) => {
                    self.done = true;
                    return Some((Err(self.store.failed("watching", err)), self));
                }
            };
            if response.compact_revision() > 0 {
                let compacted = StorageError::Compacted { requested: self.after, compacted: response.compact_revision() };
                self.buffered.push_back(Err(compacted));
                continue;
            }
            if response.canceled() {
                let reason = format!("etcd canceled the watch: {}", response.cancel_reason());
                self.buffered.push_back(Err(self.store.failed("watching", reason)));
                continue;
            }
            for event in response.events() {
                let converted = self.convert(event);
                if let Ok(event) = &converted {
                    self.after = event.revision();
                }
                self.buffered.push_back(converted);
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Event> {
        let kv = event.kv().ok_or_else(|| self.store.failed("watching", "an event without a key"))?;
        let prev = event.prev_kv().map(|kv| self.store.kv(kv)).transpose()?;
        match event.event_type() {
            EventType::Put => {
                let kv = self.store.kv(kv)?;
                // A create has no previous value, whatever etcd kept from before a delete.
                let prev = if kv.create_revision == kv.mod_revision { None } else { prev };
                Ok(Event::Put { kv, prev })
            }
            EventType::Delete => {
                let key = self.store.strip(kv.key())?;
                let prev = prev.ok_or_else(|| self.store.failed("watching", format!("the delete of {key} came without its value")))?;
                Ok(Event::Delete { key, revision: kv.mod_revision(), prev })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_prefix;

    #[test]
    fn a_prefix_loses_its_trailing_slash_as_keys_bring_their_own() {
        assert_eq!(normalize_prefix("/a"), "/a");
        assert_eq!(normalize_prefix("/a//"), "/a");
        assert_eq!(normalize_prefix(""), "");
    }
}
