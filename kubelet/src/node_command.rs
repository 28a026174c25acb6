//! `kubelet-rs` without a subcommand: the node agent, joining the API server of
//! `--kubeconfig` (with `--bootstrap-kubeconfig`, getting its certificates first:
//! `agent::node::tls_bootstrap`), or with `--apiserver` a whole single-node cluster in this process (API
//! server, scheduler and controllers from apiserver-lite, the built-in CRI service and the
//! agent), its admin kubeconfig at `<data-dir>/admin.kubeconfig`.
//!
//! The built-in CRI service runs unless `--container-runtime-endpoint` names another
//! runtime; with a pod CIDR (always with `--apiserver`) it gets a bridge network over it.
//! SIGTERM or SIGINT stops the agent, the CRI service and the API server; pods keep running
//! and are adopted again at the next start, as with the kubelet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubelet_rs::agent::config::{AgentConfig, ServerConfig, default_node_name};
use kubelet_rs::agent::node::tls_bootstrap::KubeConnector;
use kubelet_rs::agent::node::tls_bootstrap::join::{JoinFlags, JoinPlan};
use kubelet_rs::cri::config::CriConfig;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cli::AgentArgs;

/// The pod CIDR of a single-node cluster.
const DEFAULT_POD_CIDR: &str = "10.244.0.0/24";
/// The pod network of the whole cluster with --apiserver (nodes' pod CIDRs lie in it).
const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The bridge of the generated pod network.
const BRIDGE: &str = "krs0";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Usage(String),
    #[error("installing the {signal} handler: {source}")]
    Signal { signal: &'static str, source: std::io::Error },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("the API server: {0}")]
    ApiServer(String),
    #[error("the CRI service: {0}")]
    Cri(#[from] kubelet_rs::cri::server::ServeError),
    #[error("certificates: {0}")]
    Pki(String),
    #[error("TLS bootstrapping: {0}")]
    Bootstrap(#[from] kubelet_rs::agent::node::tls_bootstrap::BootstrapError),
    #[error(transparent)]
    Agent(#[from] kubelet_rs::agent::AgentError),
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::File { path: path.to_path_buf(), source }
}

pub async fn run(args: AgentArgs) -> Result<(), NodeError> {
    validate(&args)?;
    let (stop, stopped) = watch::channel(false);
    let stop = std::sync::Arc::new(stop);
    let stop_on_signal = stop.clone();
    let mut term = signal(SignalKind::terminate()).map_err(|source| NodeError::Signal { signal: "SIGTERM", source })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| NodeError::Signal { signal: "SIGINT", source })?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_on_signal.send(true);
    });
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    std::fs::create_dir_all(&args.data_dir).map_err(file_err(&args.data_dir))?;
    let node_name = args.node_name.clone().unwrap_or_else(default_node_name);
    let node_ip = args.node_ip.unwrap_or_else(first_ipv4);
    let pod_cidr = args.pod_cidr.clone().or_else(|| args.apiserver.then(|| DEFAULT_POD_CIDR.to_string()));

    let mut tasks = Vec::new();
    let (kubeconfig, server_tls) = if args.apiserver {
        let (kubeconfig, server_tls, task) = start_cluster(&args, &node_name, node_ip, shutdown(stopped.clone())).await?;
        tasks.push(task);
        (kubeconfig, server_tls)
    } else {
        let plan = join_plan(&args)?;
        // Until the certificates are issued (an approval may take a while), a signal ends the wait.
        tokio::select! {
            done = plan.carry_out(&KubeConnector, &node_name, node_ip) => done?,
            _ = shutdown(stopped.clone()) => return Ok(()),
        }
        let tls = (plan.serving.cert, plan.serving.key, plan.serving.client_ca);
        let kubeconfig = plan.kubeconfig;
        (kubeconfig, tls)
    };

    let cri_socket = match &args.container_runtime_endpoint {
        Some(endpoint) => PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint)),
        None => {
            let config = cri_config(&args, pod_cidr.as_deref())?;
            let socket = config.socket.clone();
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = kubelet_rs::cri::server::serve(config, shutdown(stopped)).await {
                    tracing::error!("the CRI service stopped: {e}");
                    eprintln!("kubelet-rs: the CRI service: {e}");
                }
            }));
            socket
        }
    };

    let mut config = AgentConfig::new(
        node_name,
        kubeconfig,
        cri_socket,
        args.data_dir.join("kubelet"),
        ServerConfig { address: SocketAddr::new(args.address, args.port), cert_file: server_tls.0, key_file: server_tls.1, client_ca_file: server_tls.2 },
    );
    config.node_ip = Some(node_ip);
    config.manifest_dir = args.pod_manifest_path.clone();
    config.pod_log_dir = args.pod_log_dir.clone();
    config.cgroup_root = args.cgroup_root.clone();
    config.pod_cidr = pod_cidr.clone();
    config.cluster_dns = cluster_dns(&args)?;
    config.cluster_domain = args.cluster_domain.clone();
    config.host_resolv_conf = args.resolv_conf.clone();
    if args.apiserver {
        config.local_path = Some((args.data_dir.join("admin.kubeconfig"), args.data_dir.join("local-path")));
    }
    config.node_labels = args.node_labels.iter().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let services = node_services_config(&args, &config, node_ip, pod_cidr.as_deref())?;
    let client = apiserver_lite::controllers::kubeconfig_client(&config.kubeconfig).await.map_err(|e| NodeError::Usage(format!("{}: {e}", config.kubeconfig.display())))?;
    let services_task = tokio::spawn(cni::node_services::run(client, services, shutdown(stopped.clone())));
    if args.apiserver && !config.cluster_dns.is_empty() {
        // The control plane keeps the kube-dns Service pointing at every node's DNS server.
        let admin = apiserver_lite::controllers::kubeconfig_client(&args.data_dir.join("admin.kubeconfig")).await.map_err(|e| NodeError::Usage(e.to_string()))?;
        let IpAddr::V4(service_ip) = config.cluster_dns[0] else { return Err(NodeError::Usage("--cluster-dns: the cluster DNS address must be IPv4".into())) };
        let target_port = dns_listen(&args, node_ip)?.map(|a| a.port()).unwrap_or(53);
        tasks.push(tokio::spawn(cni::node_services::dns_service::run(admin, cni::node_services::dns_service::DnsServiceConfig { service_ip, target_port })));
    }
    let result = kubelet_rs::agent::run(config, shutdown(stopped.clone())).await;
    // The proxy removes its rules on the way out; a DNS port already taken ends it early.
    match tokio::time::timeout(Duration::from_secs(10), services_task).await {
        Ok(Ok(Err(e))) => eprintln!("kubelet-rs: {e}"),
        Ok(Err(e)) => eprintln!("kubelet-rs: node services: {e}"),
        _ => {}
    }
    // The agent is done (stopped, or failed): the rest stops too.
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    result.map_err(NodeError::from)
}

/// `--cluster-dns`, defaulting with --apiserver to the tenth address of the service range.
fn cluster_dns(args: &AgentArgs) -> Result<Vec<IpAddr>, NodeError> {
    if !args.cluster_dns.is_empty() || !args.apiserver {
        return Ok(args.cluster_dns.clone());
    }
    let (network, _) = apiserver_lite::server::parse_cidr(&args.service_cluster_ip_range).map_err(|e| NodeError::Usage(format!("--service-cluster-ip-range: {e}")))?;
    Ok(vec![IpAddr::V4(Ipv4Addr::from(u32::from(network) + 10))])
}

/// Where this node serves DNS: `--cluster-dns-listen`, else `<node-ip>:53` when pods use a
/// cluster DNS; `None`: not here.
fn dns_listen(args: &AgentArgs, node_ip: IpAddr) -> Result<Option<SocketAddr>, NodeError> {
    match args.cluster_dns_listen.as_deref() {
        Some("none") => Ok(None),
        Some(addr) => addr.parse().map(Some).map_err(|_| NodeError::Usage(format!("--cluster-dns-listen: {addr:?} is not ADDRESS:PORT (or none)"))),
        None if args.cluster_dns.is_empty() && !args.apiserver => Ok(None),
        None => Ok(Some(SocketAddr::new(node_ip, 53))),
    }
}

/// The service proxy's and DNS server's settings from the flags.
fn node_services_config(args: &AgentArgs, config: &AgentConfig, node_ip: IpAddr, pod_cidr: Option<&str>) -> Result<cni::node_services::NodeServicesConfig, NodeError> {
    let pod_net = match pod_cidr {
        Some(c) => Some(c.parse::<ipnet::Ipv4Net>().map_err(|_| NodeError::Usage(format!("--pod-cidr: {c:?} is not an IPv4 CIDR (like 10.244.1.0/24)")))?.trunc()),
        None => None,
    };
    let cidr = match &args.cluster_cidr {
        Some(c) => Some(c.parse::<ipnet::Ipv4Net>().map_err(|_| NodeError::Usage(format!("--cluster-cidr: {c:?} is not an IPv4 CIDR (like 10.244.0.0/16)")))?.trunc()),
        None => default_cluster_cidr(args.apiserver, pod_net),
    };
    if let (Some(cluster), Some(pods)) = (cidr, pod_net)
        && !cluster.contains(&pods)
    {
        return Err(NodeError::Usage(format!("--pod-cidr {pods} is not inside the cluster's pod network {cluster} (--cluster-cidr)")));
    }
    let dns = dns_listen(args, node_ip)?.map(|listen| cni::dns::watch::DnsConfig { listen, cluster_domain: config.cluster_domain.clone(), resolv_conf: config.host_resolv_conf.clone(), ..Default::default() });
    // The node masquerades its own pods when it runs their network (the generated bridge
    // network leaves that to it, so pods on other nodes see pod addresses).
    let masquerade = match (pod_net, cidr, owns_pod_network(args)) {
        (Some(pod_cidr), Some(cluster), true) => Some(cni::node_services::masquerade::MasqueradeConfig { pod_cidr, cluster_cidrs: vec![cluster] }),
        _ => None,
    };
    Ok(cni::node_services::NodeServicesConfig {
        node_name: config.node_name.clone(),
        cluster_cidrs: cidr.into_iter().collect(),
        proxy_mode: args.proxy_mode,
        backend: Default::default(),
        dns,
        pod_routes: args.pod_routes == "host-gw",
        masquerade,
    })
}

/// The cluster's pod network when --cluster-cidr is not given: 10.244.0.0/16 for a cluster
/// of our own, or for a joining node whose pod CIDR lies in it (the usual layout of several
/// nodes); else just the node's own pod CIDR.
fn default_cluster_cidr(apiserver: bool, pod_cidr: Option<ipnet::Ipv4Net>) -> Option<ipnet::Ipv4Net> {
    let default: ipnet::Ipv4Net = DEFAULT_CLUSTER_CIDR.parse().expect("a CIDR");
    match pod_cidr {
        _ if apiserver => Some(default),
        Some(pods) if default.contains(&pods) => Some(default),
        other => other,
    }
}

/// Whether this node's pods get the network kubelet-rs generates (the built-in CRI service
/// without --cni-conf-dir).
fn owns_pod_network(args: &AgentArgs) -> bool {
    args.container_runtime_endpoint.is_none() && args.cni_conf_dir.is_none()
}

/// A joining node's credential flags, checked (`tls_bootstrap::join` has the rules).
fn join_plan(args: &AgentArgs) -> Result<JoinPlan, NodeError> {
    let flags = JoinFlags {
        kubeconfig: args.kubeconfig.clone(),
        bootstrap_kubeconfig: args.bootstrap_kubeconfig.clone(),
        tls_cert_file: args.tls_cert_file.clone(),
        tls_private_key_file: args.tls_private_key_file.clone(),
        client_ca_file: args.client_ca_file.clone(),
    };
    kubelet_rs::agent::node::tls_bootstrap::join::plan(&flags, &args.data_dir).map_err(NodeError::Usage)
}

/// Flag checks made before anything starts.
fn validate(args: &AgentArgs) -> Result<(), NodeError> {
    if args.apiserver && args.kubeconfig.is_some() {
        return Err(NodeError::Usage("--apiserver runs a cluster of its own: it takes no --kubeconfig".into()));
    }
    if args.apiserver && args.bootstrap_kubeconfig.is_some() {
        return Err(NodeError::Usage("--apiserver runs a cluster of its own: it takes no --bootstrap-kubeconfig".into()));
    }
    if !args.apiserver {
        join_plan(args)?;
        if let Some(node) = &args.node_name
            && args.bootstrap_kubeconfig.is_some()
        {
            kubelet_rs::agent::node::tls_bootstrap::validate_node_name(node).map_err(|e| NodeError::Usage(format!("--hostname-override: {e}")))?;
        }
    }
    for label in &args.node_labels {
        if !label.contains('=') {
            return Err(NodeError::Usage(format!("--node-labels: {label:?} is not key=value")));
        }
    }
    if let Some(cidr) = &args.pod_cidr {
        apiserver_lite::server::parse_cidr(cidr).map_err(|e| NodeError::Usage(format!("--pod-cidr: {e}")))?;
    }
    apiserver_lite::server::parse_cidr(&args.service_cluster_ip_range).map_err(|e| NodeError::Usage(format!("--service-cluster-ip-range: {e}")))?;
    Ok(())
}

/// The first non-loopback IPv4 address of the host, else 127.0.0.1.
fn first_ipv4() -> IpAddr {
    nix::ifaddrs::getifaddrs()
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
        .find(|ip| !ip.is_loopback())
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Start apiserver-lite in this process and return the node's kubeconfig, the kubelet API's
/// (certificate, key, client CA) and the server's task.
async fn start_cluster(
    args: &AgentArgs,
    node: &str,
    node_ip: IpAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(PathBuf, (PathBuf, PathBuf, PathBuf), tokio::task::JoinHandle<()>), NodeError> {
    let data = args.data_dir.join("apiserver");
    let listen = args.apiserver_listen;
    let advertise = if listen.ip().is_unspecified() { node_ip } else { listen.ip() };
    let config = apiserver_lite::server::Config {
        data_dir: data.clone(),
        listen,
        advertise_address: Some(advertise),
        tls_sans: vec!["127.0.0.1".into(), "localhost".into(), node.to_string()],
        storage: apiserver_lite::server::StorageBackend::Sqlite,
        token_auth_file: None,
        service_cidr: apiserver_lite::server::parse_cidr(&args.service_cluster_ip_range).map_err(NodeError::Usage)?,
        controllers: true,
        scheduler: true,
        components: components(args),
    };
    let admin = data.join("admin.kubeconfig");
    let _ = std::fs::remove_file(&admin);
    let task = tokio::spawn(async move {
        if let Err(e) = apiserver_lite::server::run(config, shutdown).await {
            tracing::error!("the API server stopped: {e}");
            eprintln!("kubelet-rs: the API server: {e}");
        }
    });
    // The server writes its admin kubeconfig once its certificates exist, before serving.
    let start = std::time::Instant::now();
    while !admin.exists() {
        if task.is_finished() || start.elapsed() > Duration::from_secs(60) {
            return Err(NodeError::ApiServer("did not start (see the messages above)".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = listen.port();
    let server_url = match advertise {
        IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("https://{ip}:{port}"),
    };
    let kubeconfig = args.data_dir.join("kubelet.kubeconfig");
    apiserver_lite::server::write_node_kubeconfig(&data, node, &server_url, &kubeconfig).map_err(|e| NodeError::Pki(e.to_string()))?;
    let hosts = vec![node.to_string(), node_ip.to_string(), "127.0.0.1".to_string(), "localhost".to_string()];
    let [cert, key, ca] = apiserver_lite::server::write_kubelet_serving_cert(&data, node, &hosts, &args.data_dir.join("pki")).map_err(|e| NodeError::Pki(e.to_string()))?;
    let admin_copy = args.data_dir.join("admin.kubeconfig");
    std::fs::copy(&admin, &admin_copy).map_err(file_err(&admin_copy))?;
    println!("kubelet-rs: a single-node cluster is starting; kubectl --kubeconfig {} get nodes", admin_copy.display());
    Ok((kubeconfig, (cert, key, ca), task))
}

/// The in-process scheduler's and controllers' options: upstream's defaults but for
/// `--node-monitor-grace-period`.
fn components(args: &AgentArgs) -> apiserver_lite::control_plane::ComponentOptions {
    let mut options = apiserver_lite::control_plane::ComponentOptions::default();
    options.controllers.node_lifecycle.grace = args.node_monitor_grace_period;
    options
}

/// The built-in CRI service's config: our directories, the OCI runtime and CNI plugins next
/// to this binary when they are there, and a bridge network over the pod CIDR.
fn cri_config(args: &AgentArgs, pod_cidr: Option<&str>) -> Result<CriConfig, NodeError> {
    let mut config = CriConfig::new(args.data_dir.clone(), args.state_dir.clone());
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    config.oci_runtime = match (&args.oci_runtime, &exe_dir) {
        (Some(runtime), _) => runtime.clone(),
        (None, Some(dir)) if dir.join("runtime-rs").is_file() => dir.join("runtime-rs"),
        _ => PathBuf::from("runtime-rs"),
    };
    config.cni_bin_dirs = if args.cni_bin_dirs.is_empty() {
        exe_dir.into_iter().chain([PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]).collect()
    } else {
        args.cni_bin_dirs.clone()
    };
    config.cni_cache_dir = args.data_dir.join("cni").join("cache");
    config.insecure_registries = args.insecure.clone();
    if let Some(dir) = &args.hosts_dir {
        config.hosts_dir = dir.clone();
    }
    config.cni_conf_dir = match (&args.cni_conf_dir, pod_cidr) {
        (Some(dir), _) => dir.clone(),
        (None, Some(cidr)) => {
            let dir = args.data_dir.join("cni").join("net.d");
            write_network(&dir, cidr, &args.data_dir.join("cni").join("ipam"))?;
            dir
        }
        (None, None) => PathBuf::from("/etc/cni/net.d"),
    };
    Ok(config)
}

/// The pod network: our bridge plugin with host-local addresses from the pod CIDR, hairpin (a
/// pod reaching itself through a service) and host ports. No `ipMasq`: it would masquerade
/// pods talking to pods on other nodes; the node services masquerade only traffic leaving
/// the cluster's pod network (`cni::node_services::masquerade`).
fn write_network(dir: &Path, cidr: &str, ipam_dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let conf = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "kubelet-rs",
        "plugins": [
            {"type": "krs-bridge", "bridge": BRIDGE, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
             "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": cidr}]], "dataDir": ipam_dir}},
            {"type": "krs-portmap", "capabilities": {"portMappings": true}}
        ]
    });
    let path = dir.join("10-kubelet-rs.conflist");
    std::fs::write(&path, serde_json::to_vec_pretty(&conf).expect("JSON")).map_err(file_err(&path))
}
