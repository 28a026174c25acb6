//! `apiserver-lite`: the Kubernetes API server, with the scheduler and the controllers in
//! the same process by default. `--data-dir` holds everything: the SQLite store, the
//! cluster's certificates, and `admin.kubeconfig` for kubectl. `apiserver-lite
//! controller-manager` and `apiserver-lite scheduler` run those loops as processes of their
//! own against any API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use apiserver_lite::control_plane::{self, Component, ComponentOptions, parse_duration};
use apiserver_lite::controllers::ControllersConfig;
use apiserver_lite::controllers::node_lifecycle::NodeLifecycleConfig;
use apiserver_lite::server::{Config, StorageBackend};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "apiserver-lite", version, about = "A Kubernetes-compatible API server (kubectl 1.33 talks to it as to any cluster)")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where the store, the certificates and admin.kubeconfig live.
    #[arg(long, global = true, default_value = "/var/lib/apiserver-lite")]
    data_dir: PathBuf,
    /// The address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The address pods and nodes reach this server at (the `kubernetes` service's endpoint
    /// and the kubeconfig's server); default: the listen address.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// More names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// `sqlite` (one file in the data dir) or `etcd` (see --etcd-servers).
    #[arg(long, default_value = "sqlite")]
    storage: String,
    /// etcd client URLs, comma-separated, for --storage etcd.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// The key prefix in etcd, so clusters can share one etcd.
    #[arg(long, default_value = "/apiserver-lite")]
    etcd_prefix: String,
    /// A static token file (token,user,uid,"group1,group2" per line).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The range cluster IPs of services come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Run the controllers in this process (`--controllers=false`: the API server alone, or
    /// with `apiserver-lite controller-manager` elsewhere).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    controllers: bool,
    /// Run the scheduler in this process (`--scheduler=false`: see `apiserver-lite scheduler`).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    scheduler: bool,
    #[command(flatten)]
    election: ElectionFlags,
    #[command(flatten)]
    node_monitor: NodeMonitorFlags,
}

/// Leader election timings, as kube-controller-manager's and kube-scheduler's flags.
#[derive(clap::Args, Debug, Clone)]
struct ElectionFlags {
    /// How long a leader's lease stays valid after it last renewed it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long a leader tries to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
}

/// The node lifecycle controller's flags.
#[derive(clap::Args, Debug, Clone)]
struct NodeMonitorFlags {
    /// How long a node may go without renewing its lease or posting status before it is
    /// marked Unknown (NotReady) and tainted unreachable.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often nodes are checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
}

fn options(leader_elect: bool, election: &ElectionFlags, node_monitor: Option<&NodeMonitorFlags>) -> ComponentOptions {
    let mut controllers = ControllersConfig::default();
    if let Some(n) = node_monitor {
        controllers.node_lifecycle = NodeLifecycleConfig { grace: n.node_monitor_grace_period, monitor_period: n.node_monitor_period };
    }
    let options = ComponentOptions {
        leader_elect,
        lease_duration: election.leader_elect_lease_duration,
        renew_deadline: election.leader_elect_renew_deadline,
        retry_period: election.leader_elect_retry_period,
        controllers,
    };
    if let Err(e) = options.validate() {
        fail(&e);
    }
    if node_monitor.is_some_and(|n| n.node_monitor_period.is_zero()) {
        fail("--node-monitor-period must be more than zero");
    }
    options
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Write a kubeconfig for a node's kubelet: a client certificate for `system:node:NAME`
    /// (group `system:nodes`) from the cluster's CA in --data-dir.
    NodeKubeconfig {
        /// The node's name.
        #[arg(long)]
        node: String,
        /// The API server's URL as the node reaches it.
        #[arg(long)]
        server: String,
        /// Where to write the kubeconfig.
        #[arg(long)]
        out: PathBuf,
        /// Also issue the kubelet API's serving certificate (for the node's name and
        /// --node-address) into this folder: kubelet.crt, kubelet.key and the cluster's ca.crt,
        /// for kubelet-rs's --tls-cert-file, --tls-private-key-file and --client-ca-file.
        #[arg(long, value_name = "DIR")]
        serving_cert_dir: Option<PathBuf>,
        /// The node's addresses (IPs or DNS names) for the serving certificate; may be repeated.
        #[arg(long = "node-address", value_name = "ADDRESS")]
        node_addresses: Vec<String>,
    },
    /// Bootstrap tokens for joining nodes (as `kubeadm token`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run the controllers (kube-controller-manager's loops) against the API server in
    /// --kubeconfig, under leader election on kube-system/kube-controller-manager.
    ControllerManager {
        /// The kubeconfig to reach the API server with (the server's admin.kubeconfig will do).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Act only while holding the lease, so several copies can run.
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        leader_elect: bool,
        #[command(flatten)]
        election: ElectionFlags,
        #[command(flatten)]
        node_monitor: NodeMonitorFlags,
        /// The CA certificate (PEM) that signs approved kubelet CSRs; with
        /// --cluster-signing-key-file (the server's DATA/pki/ca.crt and ca.key). Without
        /// them CSRs are not approved or signed.
        #[arg(long, requires = "cluster_signing_key_file")]
        cluster_signing_cert_file: Option<PathBuf>,
        /// The CA's private key (PEM).
        #[arg(long, requires = "cluster_signing_cert_file")]
        cluster_signing_key_file: Option<PathBuf>,
    },
    /// Run the scheduler against the API server in --kubeconfig, under leader election on
    /// kube-system/kube-scheduler.
    Scheduler {
        /// The kubeconfig to reach the API server with.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Act only while holding the lease, so several copies can run.
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        leader_elect: bool,
        #[command(flatten)]
        election: ElectionFlags,
    },
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Create a bootstrap token through the running server (its --data-dir/admin.kubeconfig)
    /// and write a bootstrap kubeconfig with it for a joining kubelet's
    /// --bootstrap-kubeconfig; prints the token.
    Create {
        /// The API server's URL as the joining node reaches it (default: admin.kubeconfig's).
        #[arg(long)]
        server: Option<String>,
        /// Where to write the bootstrap kubeconfig (mode 600).
        #[arg(long)]
        out: PathBuf,
        /// How long the token works (`0`: until its Secret is deleted).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// A note kept in the token's Secret.
        #[arg(long)]
        description: Option<String>,
    },
}

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    match &args.command {
        Some(Command::NodeKubeconfig { node, server, out, serving_cert_dir, node_addresses }) => {
            if let Err(e) = apiserver_lite::server::write_node_kubeconfig(&args.data_dir, node, server, out) {
                fail(&e.to_string());
            }
            if let Some(dir) = serving_cert_dir {
                let mut hosts = vec![node.clone()];
                hosts.extend(node_addresses.iter().cloned());
                if let Err(e) = apiserver_lite::server::write_kubelet_serving_cert(&args.data_dir, node, &hosts, dir) {
                    fail(&e.to_string());
                }
            }
            return;
        }
        Some(Command::Token { command: TokenCommand::Create { server, out, ttl, description } }) => {
            let options = apiserver_lite::server::JoinTokenOptions { data_dir: args.data_dir.clone(), server: server.clone(), out: out.clone(), ttl: *ttl, description: description.clone() };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
            match runtime.block_on(apiserver_lite::server::create_join_token(&options)) {
                Ok(token) => println!("{token}"),
                Err(e) => fail(&e.to_string()),
            }
            return;
        }
        Some(Command::ControllerManager { kubeconfig, leader_elect, election, node_monitor, cluster_signing_cert_file, cluster_signing_key_file }) => {
            let mut options = options(*leader_elect, election, Some(node_monitor));
            if let (Some(cert), Some(key)) = (cluster_signing_cert_file, cluster_signing_key_file) {
                let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_else(|e| fail(&format!("reading {}: {e}", p.display())));
                match apiserver_lite::auth::csr_signer::ClusterSigner::new(&read(cert), &read(key)) {
                    Ok(signer) => options.controllers.cluster_signer = Some(signer),
                    Err(e) => fail(&format!("--cluster-signing-cert-file {} / --cluster-signing-key-file {}: {e}", cert.display(), key.display())),
                }
            }
            // What kube-controller-manager publishes as kube-root-ca.crt without --root-ca-file.
            match apiserver_lite::controllers::root_ca_publisher::ca_from_kubeconfig(kubeconfig) {
                Ok(pem) => options.controllers.root_ca_pem = Some(pem),
                Err(e) => tracing::warn!("{e}; kube-root-ca.crt is not published"),
            }
            return run_component(Component::ControllerManager, kubeconfig, options);
        }
        Some(Command::Scheduler { kubeconfig, leader_elect, election }) => return run_component(Component::Scheduler, kubeconfig, options(*leader_elect, election, None)),
        None => {}
    }
    let storage = match args.storage.as_str() {
        "sqlite" => StorageBackend::Sqlite,
        "etcd" if !args.etcd_servers.is_empty() => StorageBackend::Etcd { endpoints: args.etcd_servers.clone(), prefix: args.etcd_prefix.clone() },
        "etcd" => fail("--storage etcd needs --etcd-servers URL[,URL...]"),
        other => fail(&format!("--storage must be sqlite or etcd, not {other:?}")),
    };
    let service_cidr = match apiserver_lite::server::parse_cidr(&args.service_cluster_ip_range) {
        Ok(c) => c,
        Err(e) => fail(&format!("--service-cluster-ip-range: {e}")),
    };
    let config = Config {
        data_dir: args.data_dir,
        listen: args.listen,
        advertise_address: args.advertise_address,
        tls_sans: args.tls_sans,
        storage,
        token_auth_file: args.token_auth_file,
        service_cidr,
        controllers: args.controllers,
        scheduler: args.scheduler,
        components: options(true, &args.election, Some(&args.node_monitor)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(apiserver_lite::server::run(config, shutdown_signal())) {
        fail(&e.to_string());
    }
}

/// A control-plane component as a process of its own, until SIGTERM or Ctrl-C.
fn run_component(component: Component, kubeconfig: &std::path::Path, options: ComponentOptions) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let client = match apiserver_lite::controllers::kubeconfig_client(kubeconfig).await {
            Ok(c) => c,
            Err(e) => fail(&e.to_string()),
        };
        control_plane::run(component, client, control_plane::from_kubeconfig(kubeconfig.to_path_buf()), options, shutdown_signal()).await
    });
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn fail(message: &str) -> ! {
    eprintln!("apiserver-lite: {message}");
    std::process::exit(1);
}
