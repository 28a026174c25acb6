//! `krs-proxy`: the node's service proxy and cluster DNS as a process of their own (what
//! `kubelet-rs` runs beside its agent), for a node whose agent is another kubelet, or to run
//! them apart. Stops on SIGTERM or SIGINT, removing its rules.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cni::dns::watch::DnsConfig;
use cni::node_services::{NodeServicesConfig, ProxyMode};

#[derive(Parser, Debug)]
#[command(name = "krs-proxy", version, about = "Service proxy (nftables or iptables) and cluster DNS for one Kubernetes node")]
struct Args {
    /// The API server and credentials (read access to services and endpointslices).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// This node's name (endpoints on it are local for the Local traffic policies) [default: the host name].
    #[arg(long = "hostname-override", value_name = "NAME")]
    node_name: Option<String>,
    /// The cluster's pod network; traffic from elsewhere to cluster IPs is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<ipnet::Ipv4Net>,
    /// nftables, iptables or none (DNS only).
    #[arg(long, default_value = "nftables")]
    proxy_mode: ProxyMode,
    /// Serve the cluster DNS at this address (e.g. the node's IP:53); without it, no DNS.
    #[arg(long, value_name = "ADDR:PORT")]
    cluster_dns_listen: Option<SocketAddr>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The upstream resolvers for names outside the cluster domain.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
}

fn main() {
    let args = Args::parse();
    let level = match std::env::var("KRS_PROXY_LOG").ok().as_deref() {
        Some("debug") => tracing::Level::DEBUG,
        Some("warn") => tracing::Level::WARN,
        Some("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("krs-proxy: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig).map_err(|e| format!("{}: {e}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.map_err(|e| format!("{}: {e}", args.kubeconfig.display()))?;
    let client = kube::Client::try_from(config).map_err(|e| format!("{}: {e}", args.kubeconfig.display()))?;
    let node_name = args.node_name.unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into()).to_lowercase());
    let dns = args.cluster_dns_listen.map(|listen| DnsConfig { listen, cluster_domain: args.cluster_domain.clone(), resolv_conf: args.resolv_conf.clone(), ..Default::default() });
    let config = NodeServicesConfig { node_name, cluster_cidrs: args.cluster_cidr.map(|c| c.trunc()).into_iter().collect(), proxy_mode: args.proxy_mode, backend: Default::default(), dns, pod_routes: false, masquerade: None };
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    cni::node_services::run(client, config, shutdown).await.map_err(|e| e.to_string())
}
