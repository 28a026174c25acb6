//! The node's heartbeat: the Lease `kube-node-lease/<node>` held by the node, renewed every
//! 10 s for 40 s, owned by the Node so it goes when the Node does. A stale copy (409) is
//! read again and the renewal retried; failures retry sooner, 200 ms doubling to 7 s, as
//! upstream's lease controller does.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use super::api::{ApiCallError, LEASE_NAMESPACE, NodeApi};

pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(7);
/// Conflicts retried within one renewal before giving up until the next.
const CONFLICT_RETRIES: usize = 5;

pub struct LeaseRenewer {
    api: Arc<dyn NodeApi>,
    node: String,
    /// The Lease as last written: its resourceVersion makes the next renewal a checked one.
    current: Option<Lease>,
}

impl LeaseRenewer {
    pub fn new(api: Arc<dyn NodeApi>, node: impl Into<String>) -> LeaseRenewer {
        LeaseRenewer { api, node: node.into(), current: None }
    }

    /// Create or renew the Lease once (re-reading it after a conflict).
    pub async fn renew(&mut self) -> Result<Lease, ApiCallError> {
        for _ in 0..CONFLICT_RETRIES {
            let existing = match self.current.take() {
                Some(l) => Some(l),
                None => self.api.get_lease(&self.node).await?,
            };
            let result = match existing {
                None => {
                    let lease = self.new_lease().await?;
                    self.api.create_lease(&lease).await
                }
                Some(mut lease) => {
                    self.fill(&mut lease).await?;
                    self.api.replace_lease(&lease).await
                }
            };
            match result {
                Ok(lease) => {
                    self.current = Some(lease.clone());
                    return Ok(lease);
                }
                // Someone wrote it since (or created it first): read it again and retry.
                Err(ApiCallError::Conflict(_)) | Err(ApiCallError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiCallError::Conflict(format!("lease {LEASE_NAMESPACE}/{} kept changing under the renewals", self.node)))
    }

    async fn new_lease(&self) -> Result<Lease, ApiCallError> {
        let mut lease = Lease { metadata: ObjectMeta { name: Some(self.node.clone()), namespace: Some(LEASE_NAMESPACE.into()), ..Default::default() }, spec: None };
        self.fill(&mut lease).await?;
        Ok(lease)
    }

    /// Holder, duration, renew time now, and the Node as owner when it is known.
    async fn fill(&self, lease: &mut Lease) -> Result<(), ApiCallError> {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.node.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if lease.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty())
            && let Some(uid) = self.api.get_node(&self.node).await?.and_then(|n| n.metadata.uid)
        {
            lease.metadata.owner_references =
                Some(vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name: self.node.clone(), uid, ..Default::default() }]);
        }
        Ok(())
    }

    /// Renew forever (the caller aborts the task).
    pub async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        loop {
            match self.renew().await {
                Ok(_) => {
                    retry = FIRST_RETRY;
                    tokio::time::sleep(RENEW_INTERVAL).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, node = %self.node, "renewing the node lease failed; retrying in {retry:?}");
                    tokio::time::sleep(retry).await;
                    retry = next_retry(retry);
                }
            }
        }
    }
}

fn next_retry(d: Duration) -> Duration {
    (d * 2).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::node::api::fake::FakeApi;
    use k8s_openapi::api::core::v1::Node;

    #[tokio::test]
    async fn creates_then_renews_owned_by_the_node() {
        let api = Arc::new(FakeApi::default());
        let mut node = Node::default();
        node.metadata.name = Some("node-a".into());
        node.metadata.uid = Some("u-1".into());
        *api.node.lock().unwrap() = Some(node);
        let mut r = LeaseRenewer::new(api.clone(), "node-a");
        let first = r.renew().await.unwrap();
        let spec = first.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "u-1"));
        assert_eq!(first.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        let second = r.renew().await.unwrap();
        assert_ne!(first.metadata.resource_version, second.metadata.resource_version);
    }

    #[tokio::test]
    async fn a_stale_lease_is_read_again() {
        let api = Arc::new(FakeApi::default());
        let mut r = LeaseRenewer::new(api.clone(), "node-a");
        r.renew().await.unwrap();
        // Someone else writes it: our copy's resourceVersion is stale.
        let mut other = api.lease.lock().unwrap().clone().unwrap();
        other.metadata.resource_version = Some("999".into());
        *api.lease.lock().unwrap() = Some(other);
        let renewed = r.renew().await.unwrap();
        assert_eq!(renewed.spec.unwrap().holder_identity.as_deref(), Some("node-a"));
    }

    #[tokio::test]
    async fn failures_are_errors_and_retries_back_off() {
        let api = Arc::new(FakeApi::default());
        *api.fail_next.lock().unwrap() = 1;
        let mut r = LeaseRenewer::new(api.clone(), "node-a");
        assert!(matches!(r.renew().await, Err(ApiCallError::Other(_))));
        assert!(r.renew().await.is_ok());
        assert_eq!(next_retry(FIRST_RETRY), Duration::from_millis(400));
        assert_eq!(next_retry(Duration::from_secs(5)), MAX_RETRY);
    }
}
