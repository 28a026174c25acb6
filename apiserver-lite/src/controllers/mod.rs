//! The control loops (scheduler and controllers) work through the API only, as any client
//! does: in the apiserver-lite process they call its router directly (no TLS, no sockets),
//! under their own identity; run elsewhere they use a kubeconfig. Either way they get a
//! `kube::Client`, so kube-runtime's watchers, reflectors and controllers drive them.

mod backoff;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod replicaset;
pub mod statefulset;
mod workload_events;

use axum::http::Request;

pub mod csr_signing;
pub mod endpoints;
pub mod garbage_collector;
pub mod namespace;
pub mod node_lifecycle;
pub mod root_ca_publisher;
pub mod service_lb;
pub mod ttl_after_finished;

use crate::auth::authn::UserInfo;

/// What kube-controller-manager takes as flags, for the controllers that have any.
#[derive(Clone, Debug, Default)]
pub struct ControllersConfig {
    /// --node-monitor-grace-period and --node-monitor-period.
    pub node_lifecycle: node_lifecycle::NodeLifecycleConfig,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt` (upstream's --root-ca-file, else its kubeconfig's CA); None: not published.
    pub root_ca_pem: Option<String>,
    /// The CA that signs approved kubelet CSRs (upstream's --cluster-signing-cert-file and
    /// --cluster-signing-key-file); None: the CSR controller does not run.
    pub cluster_signer: Option<crate::auth::csr_signer::ClusterSigner>,
}

/// Run every controller until the process ends (each is level-triggered and restartable:
/// a controller whose watch breaks relists and goes on). Each controller module adds its
/// one line here.
pub async fn run(client: kube::Client, config: ControllersConfig) {
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = vec![
        tokio::spawn(endpoints::run(client.clone())),
        tokio::spawn(namespace::run(client.clone())),
        tokio::spawn(garbage_collector::run(client.clone())),
        tokio::spawn(node_lifecycle::run(client.clone(), config.node_lifecycle.clone())),
        tokio::spawn(replicaset::run(client.clone())),
        tokio::spawn(deployment::run(client.clone())),
        tokio::spawn(statefulset::run(client.clone())),
        tokio::spawn(daemonset::run(client.clone())),
        tokio::spawn(job::run(client.clone(), job::JobConfig::default())),
        tokio::spawn(cronjob::run(client.clone(), cronjob::CronJobConfig::default())),
        tokio::spawn(ttl_after_finished::run(client.clone())),
        tokio::spawn(root_ca_publisher::run(client.clone(), config.root_ca_pem.clone())),
        tokio::spawn(service_lb::run(client.clone())),
    ];
    if let Some(signer) = config.cluster_signer.clone() {
        tasks.push(tokio::spawn(csr_signing::run(client.clone(), signer)));
    }
    drop(client);
    for t in tasks {
        let _ = t.await;
    }
}

/// The identity in-process control loops act as.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

/// A client that calls `app` (the server's router) in process, as `user`. The control loops
/// are part of the control plane, so they get the admin group (as kube-controller-manager's
/// and kube-scheduler's RBAC roles effectively cover everything they touch).
pub fn in_process_client(app: axum::Router, user: &str) -> kube::Client {
    let user = UserInfo::new(user, &["system:masters", "system:authenticated"]);
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: Request<kube::client::Body>| {
            req.extensions_mut().insert(user.clone());
            req
        })
        .service(app);
    kube::Client::new(service, "default")
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig { path: std::path::PathBuf, source: kube::config::KubeconfigError },
    #[error("a client from kubeconfig {path}: {source}")]
    Client { path: std::path::PathBuf, source: kube::Error },
}

/// A client from a kubeconfig file (its current context), for control loops run as
/// processes of their own; the admin kubeconfig the server writes will do.
pub async fn kubeconfig_client(path: &std::path::Path) -> Result<kube::Client, ClientError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig { path: path.to_path_buf(), source })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.map_err(|source| ClientError::Kubeconfig { path: path.to_path_buf(), source })?;
    kube::Client::try_from(config).map_err(|source| ClientError::Client { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn an_in_process_client_reads_and_writes_through_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::storage::sqlite::SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let store = crate::storage::cache::CachedStore::new(Arc::new(sqlite), 100).await.unwrap();
        let api = Arc::new(crate::handlers::Api::new(Arc::new(crate::resources::builtin()), store));
        crate::server::bootstrap(&api, ("127.0.0.1".parse().unwrap(), 6443)).await.unwrap();
        let client = in_process_client(crate::server::app(api), CONTROLLER_MANAGER_USER);
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
        let names: Vec<String> = namespaces.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|n| n.metadata.name).collect();
        assert!(names.contains(&"kube-system".to_string()), "{names:?}");
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "default");
        let cm = serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
        let created = cms.create(&Default::default(), &cm).await.unwrap();
        assert!(created.metadata.uid.is_some());
        assert_eq!(cms.get("c").await.unwrap().data.unwrap()["a"], "1");
    }
}
