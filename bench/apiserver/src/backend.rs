//! What a measured system must do: the same key/value work whether it is the API server
//! (HTTP verbs on pods) or etcd alone (the equivalent etcd operations), so one workload
//! drives both.

#[derive(thiserror::Error, Debug)]
pub enum BackendError {
    #[error("{op}: {source}")]
    Http { op: String, source: reqwest::Error },
    #[error("{op}: HTTP {status}: {body}")]
    Status { op: String, status: reqwest::StatusCode, body: String },
    #[error("{op}: the response is not what was expected: {what}")]
    Unexpected { op: String, what: String },
    #[error("{op}: etcd: {source}")]
    Etcd { op: String, source: etcd_client::Error },
    #[error("setting up the client: {0}")]
    Client(String),
}

/// A whole list, however many pages it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub items: usize,
    pub pages: usize,
}

pub trait Backend {
    type Watch: Watch;
    /// Untimed setup before the workload (the API server's namespace).
    async fn prepare(&self) -> Result<(), BackendError>;
    /// Create the pod `name`; fails if it exists (etcd: a create-revision guard).
    async fn create(&self, name: &str) -> Result<(), BackendError>;
    async fn get(&self, name: &str) -> Result<(), BackendError>;
    /// Every pod of the namespace, in pages of `page` items if given.
    async fn list(&self, page: Option<usize>) -> Result<Listed, BackendError>;
    /// A watch on the namespace's pods from now on (no replay of what exists).
    async fn watch(&self) -> Result<Self::Watch, BackendError>;
}

pub trait Watch {
    /// The name of the next pod added; other events are skipped.
    async fn next_added(&mut self) -> Result<String, BackendError>;
}
