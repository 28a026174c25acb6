//! Services on a node: the service proxy and the cluster DNS server, as `kubelet-rs` runs
//! them beside its agent (and `krs-proxy` on its own), plus, on the control plane, the
//! `kube-dns` Service that points pods at every node's DNS server ([`dns_service`]).

pub mod dns_service;
pub mod host_gw;
pub mod masquerade;

use std::future::Future;
use std::net::SocketAddr;

use ipnet::Ipv4Net;

use crate::dns::watch::DnsConfig;
use crate::proxy::{Backend, BackendOptions, ProxyConfig, ProxyError};

/// How often the node's masquerade rule is checked (and written again if gone).
const MASQUERADE_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How Services are programmed into the packet filter (kube-proxy's `--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
    /// No service proxy on this node.
    None,
}

impl std::str::FromStr for ProxyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<ProxyMode, String> {
        match s {
            "nftables" => Ok(ProxyMode::Nftables),
            "iptables" => Ok(ProxyMode::Iptables),
            "none" => Ok(ProxyMode::None),
            other => Err(format!("{other:?} is not a proxy mode (nftables, iptables or none)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeServicesConfig {
    pub node_name: String,
    /// The cluster's pod networks: traffic from elsewhere to cluster IPs is masqueraded.
    pub cluster_cidrs: Vec<Ipv4Net>,
    pub proxy_mode: ProxyMode,
    pub backend: BackendOptions,
    /// Serve the cluster DNS here (`None`: no DNS server on this node).
    pub dns: Option<DnsConfig>,
    /// Keep routes to the other nodes' pod CIDRs ([`host_gw`]).
    pub pod_routes: bool,
    /// Masquerade this node's pods leaving the cluster network ([`masquerade`]): when the
    /// node runs its own pod network (its bridge plugin then masquerades nothing).
    pub masquerade: Option<masquerade::MasqueradeConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeServicesError {
    #[error("service proxy: {0}")]
    Proxy(#[from] ProxyError),
    #[error("cluster DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("pod network: {0}")]
    Masquerade(#[from] masquerade::MasqueradeError),
}

/// The backend for `mode`: nftables unless asked otherwise (or `nft` cannot run here, then
/// iptables, said in the log).
pub fn backend(mode: ProxyMode, options: BackendOptions) -> Option<Box<dyn Backend>> {
    match mode {
        ProxyMode::None => None,
        ProxyMode::Nftables if !runs("nft") => {
            tracing::warn!("service proxy: nft does not run here (is the nftables package installed?); using iptables");
            Some(Box::new(crate::proxy::iptables::Iptables::new(options)))
        }
        ProxyMode::Nftables => Some(Box::new(crate::proxy::nftables::Nftables::new(options))),
        ProxyMode::Iptables => Some(Box::new(crate::proxy::iptables::Iptables::new(options))),
    }
}

fn runs(program: &str) -> bool {
    std::process::Command::new(program).arg("--version").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Run the proxy and the DNS server until `shutdown`; the proxy then removes its rules. A
/// DNS address that cannot be bound (a port already in use) is reported at once and the
/// proxy runs without it.
pub async fn run(client: kube::Client, config: NodeServicesConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), NodeServicesError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // A DNS address already taken must not take the proxy down with it: said, and skipped.
    let dns = match &config.dns {
        Some(dns) => match crate::dns::DnsServer::bind(dns.listen).await {
            Ok(server) => Some((server, dns.clone())),
            Err(e) => {
                tracing::error!("cluster DNS not served on this node: {e}");
                eprintln!("cluster DNS not served on this node: {e}");
                None
            }
        },
        None => None,
    };
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), NodeServicesError>>> = Vec::new();
    // Tasks that only keep kernel state (routes, the masquerade): stopped, their state stays.
    let mut keepers: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if let Some(masq) = config.masquerade.clone() {
        let filter = if config.proxy_mode == ProxyMode::Iptables || !runs("nft") { masquerade::Filter::Iptables } else { masquerade::Filter::Nftables };
        let netns = config.backend.netns.clone();
        let written = masq.clone();
        let ns = netns.clone();
        tokio::task::spawn_blocking(move || masquerade::apply(filter, &written, ns.as_deref())).await.expect("masquerade task")?;
        tracing::info!(?filter, pod_cidr = %masq.pod_cidr, "pods leaving the cluster network are masqueraded");
        keepers.push(tokio::spawn(masquerade::keep(filter, masq, netns, MASQUERADE_CHECK)));
    }
    if config.pod_routes {
        let table = Box::new(host_gw::IpRoutes { netns: config.backend.netns.clone() });
        keepers.push(tokio::spawn(host_gw::run(client.clone(), config.node_name.clone(), table)));
    }
    if let Some((server, dns)) = dns {
        let (client, stopped) = (client.clone(), stopped.clone());
        let listen: SocketAddr = server.local_addr();
        tracing::info!(%listen, domain = %dns.cluster_domain, "cluster DNS serving");
        tasks.push(tokio::spawn(async move {
            let result = crate::dns::watch::run_on(client, dns, server, wait(stopped)).await;
            if let Err(e) = &result {
                tracing::error!("cluster DNS stopped: {e}");
            }
            Ok(result?)
        }));
    }
    if let Some(backend) = backend(config.proxy_mode, config.backend.clone()) {
        let proxy = ProxyConfig::new(&config.node_name, config.cluster_cidrs.clone());
        tracing::info!(mode = ?config.proxy_mode, cluster_cidrs = ?config.cluster_cidrs, "service proxy starting");
        tasks.push(tokio::spawn(async move {
            let result = crate::proxy::run(client, proxy, backend, wait(stopped)).await;
            if let Err(e) = &result {
                tracing::error!("service proxy stopped: {e}");
            }
            Ok(result?)
        }));
    }
    shutdown.await;
    let _ = stop.send(true);
    // The routes and the masquerade stay in the kernel for the pods; only their keepers stop.
    keepers.iter().for_each(tokio::task::JoinHandle::abort);
    let mut result = Ok(());
    for task in tasks {
        if let Ok(Err(e)) = task.await {
            result = Err(e);
        }
    }
    result
}
