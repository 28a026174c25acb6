//! The calls the node agent makes to the API server for its Node and Lease, as a
//! trait: implemented over `kube::Client` here, by an in-memory fake in the tests.

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How an API call failed, as far as the callers tell failures apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiCallError {
    /// 409: the object exists already, or was changed since it was read.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

impl From<kube::Error> for ApiCallError {
    fn from(e: kube::Error) -> ApiCallError {
        match &e {
            kube::Error::Api(s) if s.code == 409 => ApiCallError::Conflict(s.message.clone()),
            kube::Error::Api(s) if s.code == 404 => ApiCallError::NotFound(s.message.clone()),
            _ => ApiCallError::Other(e.to_string()),
        }
    }
}

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

#[async_trait]
pub trait NodeApi: Send + Sync {
    async fn get_node(&self, name: &str) -> Result<Option<Node>, ApiCallError>;
    /// Create; `Conflict` when it exists.
    async fn create_node(&self, node: &Node) -> Result<Node, ApiCallError>;
    /// A strategic merge patch of the Node (metadata and spec).
    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError>;
    /// A strategic merge patch of `nodes/<name>/status`.
    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError>;
    /// The Lease `kube-node-lease/<name>`.
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, ApiCallError>;
    async fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError>;
    /// Replace with the resourceVersion it carries: `Conflict` when that is stale.
    async fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError>;
}

#[async_trait]
impl NodeApi for kube::Client {
    async fn get_node(&self, name: &str) -> Result<Option<Node>, ApiCallError> {
        Ok(Api::<Node>::all(self.clone()).get_opt(name).await?)
    }

    async fn create_node(&self, node: &Node) -> Result<Node, ApiCallError> {
        Ok(Api::<Node>::all(self.clone()).create(&PostParams::default(), node).await?)
    }

    async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError> {
        Ok(Api::<Node>::all(self.clone()).patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await?)
    }

    async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError> {
        Ok(Api::<Node>::all(self.clone()).patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await?)
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, ApiCallError> {
        Ok(Api::<Lease>::namespaced(self.clone(), LEASE_NAMESPACE).get_opt(name).await?)
    }

    async fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError> {
        Ok(Api::<Lease>::namespaced(self.clone(), LEASE_NAMESPACE).create(&PostParams::default(), lease).await?)
    }

    async fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError> {
        let name = lease.metadata.name.clone().unwrap_or_default();
        Ok(Api::<Lease>::namespaced(self.clone(), LEASE_NAMESPACE).replace(&name, &PostParams::default(), lease).await?)
    }
}

#[cfg(test)]
pub mod fake {
    //! An API server of one node's objects, in memory, with resourceVersions so stale
    //! lease updates conflict; it applies status patches as whole-field replacement, enough
    //! for what the agent sends.
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct FakeApi {
        pub node: Mutex<Option<Node>>,
        pub lease: Mutex<Option<Lease>>,
        pub status_patches: Mutex<Vec<serde_json::Value>>,
        pub node_patches: Mutex<Vec<serde_json::Value>>,
        /// Calls to fail with `Other` before succeeding again.
        pub fail_next: Mutex<usize>,
        pub version: Mutex<u64>,
    }

    impl FakeApi {
        fn failing(&self) -> Result<(), ApiCallError> {
            let mut n = self.fail_next.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return Err(ApiCallError::Other("connection refused".into()));
            }
            Ok(())
        }
        fn next_version(&self) -> String {
            let mut v = self.version.lock().unwrap();
            *v += 1;
            v.to_string()
        }
    }

    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[async_trait]
    impl NodeApi for FakeApi {
        async fn get_node(&self, _: &str) -> Result<Option<Node>, ApiCallError> {
            self.failing()?;
            Ok(self.node.lock().unwrap().clone())
        }
        async fn create_node(&self, node: &Node) -> Result<Node, ApiCallError> {
            self.failing()?;
            let mut stored = self.node.lock().unwrap();
            if stored.is_some() {
                return Err(ApiCallError::Conflict("nodes \"node-a\" already exists".into()));
            }
            let mut node = node.clone();
            node.metadata.uid = Some(format!("uid-{}", self.next_version()));
            *stored = Some(node.clone());
            Ok(node)
        }
        async fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError> {
            self.failing()?;
            self.node_patches.lock().unwrap().push(patch.clone());
            let mut stored = self.node.lock().unwrap();
            let node = stored.as_mut().ok_or_else(|| ApiCallError::NotFound(name.into()))?;
            let mut v = serde_json::to_value(&*node).unwrap();
            merge(&mut v, patch);
            *node = serde_json::from_value(v).unwrap();
            Ok(node.clone())
        }
        async fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiCallError> {
            self.failing()?;
            self.status_patches.lock().unwrap().push(patch.clone());
            let mut stored = self.node.lock().unwrap();
            let node = stored.as_mut().ok_or_else(|| ApiCallError::NotFound(name.into()))?;
            let mut v = serde_json::to_value(&*node).unwrap();
            merge(&mut v, patch);
            *node = serde_json::from_value(v).unwrap();
            Ok(node.clone())
        }
        async fn get_lease(&self, _: &str) -> Result<Option<Lease>, ApiCallError> {
            self.failing()?;
            Ok(self.lease.lock().unwrap().clone())
        }
        async fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError> {
            self.failing()?;
            let mut stored = self.lease.lock().unwrap();
            if stored.is_some() {
                return Err(ApiCallError::Conflict("exists".into()));
            }
            let mut lease = lease.clone();
            lease.metadata.resource_version = Some(self.next_version());
            *stored = Some(lease.clone());
            Ok(lease)
        }
        async fn replace_lease(&self, lease: &Lease) -> Result<Lease, ApiCallError> {
            self.failing()?;
            let mut stored = self.lease.lock().unwrap();
            let current = stored.as_ref().ok_or_else(|| ApiCallError::NotFound("lease".into()))?;
            if current.metadata.resource_version != lease.metadata.resource_version {
                return Err(ApiCallError::Conflict("the object has been modified".into()));
            }
            let mut lease = lease.clone();
            lease.metadata.resource_version = Some(self.next_version());
            *stored = Some(lease.clone());
            Ok(lease)
        }
    }
}

#[cfg(test)]
mod wire_tests {
    //! What `kube::Client` puts on the wire for these calls, and how answers map to errors.
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::{Request, Response};

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    fn status(code: u16, reason: &str) -> String {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{reason} here"), "reason": reason, "code": code}).to_string()
    }

    fn client(seen: Seen) -> kube::Client {
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let seen = seen.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let body = String::from_utf8_lossy(&req.into_body().collect().await.unwrap().to_bytes()).into_owned();
                seen.lock().unwrap().push((method.clone(), path.clone(), ct, body));
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "uid": "u1"}}).to_string();
                let (code, body) = match (method.as_str(), path.as_str()) {
                    ("GET", "/api/v1/nodes/node-a") => (404, status(404, "NotFound")),
                    ("POST", "/api/v1/nodes") => (409, status(409, "AlreadyExists")),
                    ("PATCH", "/api/v1/nodes/node-a/status") => (200, node),
                    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a") => (409, status(409, "Conflict")),
                    _ => (500, status(500, "InternalError")),
                };
                Ok::<_, Infallible>(Response::builder().status(code).header("content-type", "application/json").body(Full::new(Bytes::from(body))).unwrap())
            }
        });
        kube::Client::new(svc, "default")
    }

    #[tokio::test]
    async fn calls_and_answers() {
        let seen: Seen = Arc::default();
        let c = client(seen.clone());
        assert_eq!(c.get_node("node-a").await.unwrap(), None);
        let mut node = Node::default();
        node.metadata.name = Some("node-a".into());
        assert!(matches!(c.create_node(&node).await, Err(ApiCallError::Conflict(_))));
        let patched = c.patch_node_status("node-a", &serde_json::json!({"status": {"conditions": []}})).await.unwrap();
        assert_eq!(patched.metadata.uid.as_deref(), Some("u1"));
        let mut lease = Lease::default();
        lease.metadata.name = Some("node-a".into());
        lease.metadata.resource_version = Some("5".into());
        assert!(matches!(c.replace_lease(&lease).await, Err(ApiCallError::Conflict(_))));
        assert!(matches!(c.get_lease("node-a").await, Err(ApiCallError::Other(_))));
        let seen = seen.lock().unwrap().clone();
        let patch = seen.iter().find(|(m, ..)| m == "PATCH").unwrap();
        assert_eq!(patch.2, "application/strategic-merge-patch+json");
        assert_eq!(patch.3, r#"{"status":{"conditions":[]}}"#);
        assert!(seen.iter().any(|(m, p, _, b)| m == "PUT" && p.ends_with("/leases/node-a") && b.contains("\"resourceVersion\":\"5\"")));
    }
}
