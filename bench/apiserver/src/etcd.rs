//! etcd alone, the floor: the key/value operations an API server on etcd does for the same
//! work, without HTTP, TLS, JSON handling or a cache. Create is a transaction guarded by
//! create_revision == 0 (as apiserver-lite's etcd store and kube-apiserver do), get a
//! single-key range, list a prefix range (paged lists pinned to the first page's revision),
//! watch a prefix watch from the current revision on.

use etcd_client::{Client, Compare, KvClient, CompareOp, GetOptions, Txn, TxnOp, WatchOptions, WatchStream};

use crate::backend::{Backend, BackendError, Listed, Watch};

pub struct Etcd {
    client: Client,
    /// For ranges: a list of 10,000 pods is some 25 MB, over the client's 4 MiB default.
    kv: KvClient,
    prefix: String,
}

const MAX_RESPONSE: usize = 1 << 30;

fn etcd(op: &str) -> impl FnOnce(etcd_client::Error) -> BackendError + '_ {
    move |source| BackendError::Etcd { op: op.to_string(), source }
}

/// The first key after every key starting with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    pub async fn connect(endpoint: &str, namespace: &str) -> Result<Etcd, BackendError> {
        let client = Client::connect([endpoint], None).await.map_err(etcd("connecting"))?;
        let kv = client.kv_client().max_decoding_message_size(MAX_RESPONSE);
        Ok(Etcd { client, kv, prefix: format!("/bench-floor/pods/{namespace}/") })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Backend for Etcd {
    type Watch = EtcdWatch;

    async fn prepare(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn create(&self, name: &str) -> Result<(), BackendError> {
        let key = self.key(name);
        let value = serde_json::to_vec(&crate::pod::pod("bench", name)).expect("a JSON value serializes");
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(key, value, None)]);
        let response = self.client.clone().txn(txn).await.map_err(etcd("create"))?;
        if !response.succeeded() {
            return Err(BackendError::Unexpected { op: "create".into(), what: format!("{name} exists already") });
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<(), BackendError> {
        let response = self.client.clone().get(self.key(name), None).await.map_err(etcd("get"))?;
        match response.kvs() {
            [_] => Ok(()),
            other => Err(BackendError::Unexpected { op: "get".into(), what: format!("{} keys for {name}", other.len()) }),
        }
    }

    async fn list(&self, page: Option<usize>) -> Result<Listed, BackendError> {
        let mut client = self.kv.clone();
        let end = prefix_end(&self.prefix);
        let mut start = self.prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut listed = Listed { items: 0, pages: 0 };
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_revision(revision);
            if let Some(limit) = page {
                options = options.with_limit(limit as i64);
            }
            let response = client.get(start.clone(), Some(options)).await.map_err(etcd("list"))?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            listed.items += response.kvs().len();
            listed.pages += 1;
            match response.kvs().last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(listed),
            }
        }
    }

    async fn watch(&self) -> Result<EtcdWatch, BackendError> {
        let mut client = self.client.clone();
        // From the revision after the current one, so no write after this call is missed
        // even if the watch is registered late.
        let now = client.get(self.prefix.clone(), Some(GetOptions::new().with_count_only())).await.map_err(etcd("reading the revision"))?;
        let revision = now.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let stream = client.watch(self.prefix.clone(), Some(options)).await.map_err(etcd("watch"))?;
        Ok(EtcdWatch { stream, prefix: self.prefix.clone(), pending: Vec::new() })
    }
}

pub struct EtcdWatch {
    stream: WatchStream,
    prefix: String,
    /// Names from a response that carried several events, oldest last.
    pending: Vec<String>,
}

impl Watch for EtcdWatch {
    async fn next_added(&mut self) -> Result<String, BackendError> {
        loop {
            if let Some(name) = self.pending.pop() {
                return Ok(name);
            }
            let response = self.stream.message().await.map_err(etcd("watch"))?.ok_or_else(|| BackendError::Unexpected { op: "watch".into(), what: "etcd ended the watch".into() })?;
            if response.canceled() {
                return Err(BackendError::Unexpected { op: "watch".into(), what: format!("etcd canceled the watch: {}", response.cancel_reason()) });
            }
            for event in response.events().iter().rev() {
                // A put of a new key (create_revision == mod_revision) is what ADDED is.
                if let Some(kv) = event.kv().filter(|kv| kv.create_revision() == kv.mod_revision()) {
                    let key = String::from_utf8_lossy(kv.key());
                    self.pending.push(key.strip_prefix(&self.prefix).unwrap_or(&key).to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
