//! Starting the server: certificates and the admin kubeconfig, storage behind the watch
//! cache, the cluster's bootstrap objects, then HTTPS until shutdown.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth;
use crate::handlers::Api;
use crate::storage::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// `<data-dir>/state.db`.
    Sqlite,
    Etcd { endpoints: Vec<String>, prefix: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise_address: Option<IpAddr>,
    pub tls_sans: Vec<String>,
    pub storage: StorageBackend,
    pub token_auth_file: Option<PathBuf>,
    pub service_cidr: (Ipv4Addr, u8),
    /// Run the controllers in this process (each under leader election).
    pub controllers: bool,
    /// Run the scheduler in this process (under leader election).
    pub scheduler: bool,
    /// Leader election and controller settings for both.
    pub components: crate::control_plane::ComponentOptions,
}

#[derive(thiserror::Error, Debug)]
pub enum ServerError {
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("certificates: {0}")]
    Pki(String),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("creating the cluster's system objects: {0}")]
    Bootstrap(crate::handlers::status::ApiError),
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// `10.96.0.0/12` as (network, prefix length); only IPv4 for now.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, bits) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (like 10.96.0.0/12)"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
    let bits: u8 = bits.parse().ok().filter(|b| (8..=30).contains(b)).ok_or_else(|| format!("{s:?}: the prefix length must be between 8 and 30"))?;
    let mask = u32::MAX << (32 - bits);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let inner: Arc<dyn Store> = match &config.storage {
        StorageBackend::Sqlite => Arc::new(crate::storage::sqlite::SqliteStore::open(&config.data_dir.join("state.db"))?),
        StorageBackend::Etcd { endpoints, prefix } => Arc::new(crate::storage::etcd::EtcdStore::connect(endpoints, prefix).await?),
    };
    let cached: Arc<dyn Store> = crate::storage::cache::CachedStore::new(inner, 10_000).await?;
    Ok(cached)
}

/// A kubeconfig for node `node`'s kubelet, its client certificate issued by the cluster CA
/// under `data_dir` (which must exist: the server creates it on first start).
pub fn write_node_kubeconfig(data_dir: &std::path::Path, node: &str, server: &str, out: &std::path::Path) -> Result<(), ServerError> {
    if !data_dir.join("pki").join("ca.crt").exists() {
        return Err(ServerError::Pki(format!("{} has no cluster CA yet (pki/ca.crt): start apiserver-lite with this --data-dir once first", data_dir.display())));
    }
    if node.is_empty() || !node.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.') {
        return Err(ServerError::Pki(format!("node name {node:?} must be a lowercase RFC 1123 subdomain")));
    }
    let pki = auth::Pki::load_or_create(data_dir, &[]).map_err(|e| ServerError::Pki(e.to_string()))?;
    let user = format!("system:node:{node}");
    let (cert_pem, key_pem) = pki.issue_client_cert(&user, &["system:nodes"]).map_err(|e| ServerError::Pki(e.to_string()))?;
    auth::kubeconfig::write(out, "apiserver-lite", server, pki.ca_cert_pem(), &user, auth::kubeconfig::Credentials::ClientCert { cert_pem, key_pem })
        .map_err(|e| ServerError::Pki(e.to_string()))
}

/// The files of a kubelet's HTTPS API: a serving certificate for `node` answering to `hosts`,
/// issued by the cluster CA under `data_dir`, its key, and the CA (whose client certificates,
/// the API server's among them, the kubelet accepts), written to `out_dir` as `kubelet.crt`,
/// `kubelet.key` (mode 600) and `ca.crt`; returns their paths in that order.
pub fn write_kubelet_serving_cert(data_dir: &std::path::Path, node: &str, hosts: &[String], out_dir: &std::path::Path) -> Result<[PathBuf; 3], ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !data_dir.join("pki").join("ca.crt").exists() {
        return Err(ServerError::Pki(format!("{} has no cluster CA yet (pki/ca.crt): start apiserver-lite with this --data-dir once first", data_dir.display())));
    }
    let pki = auth::Pki::load_or_create(data_dir, &[]).map_err(|e| ServerError::Pki(e.to_string()))?;
    let (cert, key) = pki.issue_serving_cert(node, hosts).map_err(|e| ServerError::Pki(e.to_string()))?;
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ServerError::DataDir { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let paths = [out_dir.join("kubelet.crt"), out_dir.join("kubelet.key"), out_dir.join("ca.crt")];
    std::fs::write(&paths[0], cert).map_err(io(&paths[0]))?;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&paths[1]).map_err(io(&paths[1]))?;
    f.write_all(key.as_bytes()).map_err(io(&paths[1]))?;
    std::fs::write(&paths[2], pki.ca_cert_pem()).map_err(io(&paths[2]))?;
    Ok(paths)
}

/// Serve until `shutdown` completes.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir { path: config.data_dir.clone(), source })?;
    let advertise = config.advertise_address.unwrap_or(match config.listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    });
    let mut hosts = vec![advertise.to_string()];
    hosts.extend(config.tls_sans.iter().cloned());
    let pki = auth::Pki::load_or_create(&config.data_dir, &hosts).map_err(|e| ServerError::Pki(e.to_string()))?;
    // In-process controllers have no kubeconfig to read the CA from: they get it here.
    config.components.controllers.root_ca_pem.get_or_insert_with(|| pki.ca_cert_pem().to_string());
    // And the CA itself, to sign kubelets' certificate requests.
    if config.components.controllers.cluster_signer.is_none() {
        config.components.controllers.cluster_signer = Some(auth::csr_signer::ClusterSigner::from_pki(&pki).map_err(|e| ServerError::Pki(e.to_string()))?);
    }
    let server_url = match advertise {
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", config.listen.port()),
        IpAddr::V4(ip) => format!("https://{ip}:{}", config.listen.port()),
    };
    auth::kubeconfig::write(
        &config.data_dir.join("admin.kubeconfig"),
        "apiserver-lite",
        &server_url,
        pki.ca_cert_pem(),
        "kubernetes-admin",
        auth::kubeconfig::Credentials::ClientCert { cert_pem: pki.admin_cert_pem().to_string(), key_pem: pki.admin_key_pem().to_string() },
    )
    .map_err(|e| ServerError::Pki(e.to_string()))?;

    let store = open_store(&config).await?;
    // History older than five minutes goes (as kube-apiserver compacts etcd): watches that
    // fall that far behind get 410 Expired and relist.
    tokio::spawn(crate::storage::compactor::compact_periodically(store.clone(), std::time::Duration::from_secs(300)));
    let mut api = Api::new(Arc::new(crate::resources::builtin()), store);
    api.service_cidr = config.service_cidr;
    let sa_key = auth::jwt::SigningKey::load_or_create(pki.dir()).map_err(|e| ServerError::Pki(e.to_string()))?;
    api.sa_tokens = Arc::new(auth::sa_token::ServiceAccountTokens::new(sa_key));
    api.kubelet = Some(crate::handlers::node_proxy::KubeletClient::from_pki(&pki).map_err(|e| ServerError::Pki(e.to_string()))?);
    let api = Arc::new(api);
    super::bootstrap(&api, (advertise, config.listen.port())).await.map_err(ServerError::Bootstrap)?;

    let app = super::app(api.clone());
    let (stop_components, components) = start_components(&config, &app);
    let tls = auth::tls::server_config(&pki).map_err(|e| ServerError::Pki(e.to_string()))?;
    let authn = auth::authn::Authenticator::new(config.token_auth_file.as_deref()).map_err(|e| ServerError::Pki(e.to_string()))?;
    let objects = Arc::new(crate::handlers::token::StoreObjects::new(&api));
    let authn = Arc::new(authn.with_service_accounts(api.sa_tokens.clone(), objects.clone()).with_bootstrap_tokens(objects));
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| ServerError::Listen { addr: config.listen, source })?;
    tracing::info!(listen = %config.listen, kubeconfig = %config.data_dir.join("admin.kubeconfig").display(), "serving");
    auth::serve::serve(listener, tls, authn, app, shutdown).await;
    // The control loops stop and release their leases (a standby server takes over at once);
    // their clients call the router directly, so they can still do that now.
    let _ = stop_components.send(true);
    for c in components {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
    }
    Ok(())
}

/// The scheduler and controllers the config asks for, each under its own leader election,
/// on in-process clients; they stop when the sender says true.
fn start_components(config: &Config, app: &axum::Router) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    use crate::control_plane::{self, Component};
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (component, enabled) in [(Component::ControllerManager, config.controllers), (Component::Scheduler, config.scheduler)] {
        if !enabled {
            continue;
        }
        let election_client = crate::controllers::in_process_client(app.clone(), component.user());
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tasks.push(tokio::spawn(control_plane::run(component, election_client, control_plane::in_process(app.clone(), component), config.components.clone(), shutdown)));
    }
    (stop, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.96.0.0/12").unwrap(), (Ipv4Addr::new(10, 96, 0, 0), 12));
        assert_eq!(parse_cidr("10.96.3.7/16").unwrap(), (Ipv4Addr::new(10, 96, 0, 0), 16));
        assert!(parse_cidr("10.96.0.0").is_err());
        assert!(parse_cidr("10.96.0.0/31").is_err());
        assert!(parse_cidr("fd00::/108").is_err());
    }
}
