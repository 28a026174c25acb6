//! `apiserver-lite`: the Kubernetes API server on its own. `--data-dir` holds everything: the
//! SQLite store, the cluster's certificates, and `admin.kubeconfig` for kubectl.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    },
}

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    if let Some(Command::NodeKubeconfig { node, server, out }) = &args.command {
        match apiserver_lite::server::write_node_kubeconfig(&args.data_dir, node, server, out) {
            Ok(()) => return,
            Err(e) => fail(&e.to_string()),
        }
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(apiserver_lite::server::run(config, shutdown_signal())) {
        fail(&e.to_string());
    }
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
