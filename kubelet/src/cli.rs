//! The command line, parsed apart from the work (`image.rs` does that).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "kubelet-rs", version, about = "A Kubernetes node in Rust", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: the node agent (with `--apiserver`, a whole cluster).
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// The node agent's flags (named as the kubelet's where it has them).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Run a whole single-node cluster in this process: API server, scheduler, controllers,
    /// CRI service and the agent. The admin kubeconfig is written to <data-dir>/admin.kubeconfig.
    #[arg(long)]
    pub apiserver: bool,
    /// Persistent state: images, containers, pods' volumes, certificates (and with
    /// --apiserver the cluster's store).
    #[arg(long, default_value = "/var/lib/kubelet-rs")]
    pub data_dir: PathBuf,
    /// Runtime state a reboot clears (the CRI socket, namespaces).
    #[arg(long, default_value = "/run/kubelet-rs")]
    pub state_dir: PathBuf,
    /// The API server to join (a kubeconfig with this node's credentials); not with --apiserver.
    /// With --bootstrap-kubeconfig: where the node's credentials are written when this file is
    /// missing or its certificate unreadable or expired [default: <data-dir>/kubelet.kubeconfig].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Join with a bootstrap token: a kubeconfig (server, CA, token; `apiserver-lite token
    /// create` writes one) to request this node's client certificate with, and its kubelet API
    /// serving certificate unless --tls-cert-file is given (kept in <data-dir>/pki).
    #[arg(long, value_name = "FILE")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The node's name [default: the host name].
    #[arg(long = "hostname-override", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's address [default: the first non-loopback IPv4 address, else 127.0.0.1].
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Labels to register the node with: key=value[,key=value...].
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// A CRI runtime's socket (e.g. /run/containerd/containerd.sock) instead of the built-in
    /// CRI service.
    #[arg(long, value_name = "PATH")]
    pub container_runtime_endpoint: Option<String>,
    /// A folder of static pod manifests.
    #[arg(long, value_name = "DIR")]
    pub pod_manifest_path: Option<PathBuf>,
    /// The kubelet API's address.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: std::net::IpAddr,
    /// The kubelet API's port.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The kubelet API's serving certificate [default with --apiserver: issued by the cluster CA;
    /// with --bootstrap-kubeconfig: requested, <data-dir>/pki/kubelet.crt].
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates the kubelet API accepts (the cluster CA) [default with
    /// --bootstrap-kubeconfig: the cluster CA, written to <data-dir>/pki/ca.crt].
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The node's pod CIDR; a bridge network over it is configured for the built-in CRI service
    /// [default with --apiserver: 10.244.0.0/24].
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The cluster's pod network, for the service proxy's masquerade decisions
    /// [default: 10.244.0.0/16 with --apiserver, else --pod-cidr].
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// How the service proxy programs Services: nftables, iptables or none.
    #[arg(long, default_value = "nftables")]
    pub proxy_mode: cni::node_services::ProxyMode,
    /// Where this node serves the cluster DNS (the kube-dns Service's endpoint on this node)
    /// [default: <node-ip>:53 when --cluster-dns is set]; `none`: no DNS server here.
    #[arg(long, value_name = "ADDR:PORT")]
    pub cluster_dns_listen: Option<String>,
    /// The cgroup pods go under (<root>/kubepods/...).
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// The cluster DNS service's IPs, comma-separated [default with --apiserver: the tenth
    /// address of the service range, 10.96.0.10].
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<std::net::IpAddr>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The resolv.conf pods with dnsPolicy Default get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Where container logs go.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// With --apiserver: the API server's address.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub apiserver_listen: std::net::SocketAddr,
    /// With --apiserver: the range of services' cluster IPs.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// The built-in CRI service's OCI runtime [default: runtime-rs next to this binary, else on PATH].
    #[arg(long)]
    pub oci_runtime: Option<PathBuf>,
    /// The built-in CRI service's network configurations [default: generated under
    /// <data-dir>/cni with --apiserver or --pod-cidr, else /etc/cni/net.d].
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where CNI plugins are [default: next to this binary, /opt/cni/bin, /usr/lib/cni].
    #[arg(long = "cni-bin-dir", value_name = "DIR")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// A registry (`host:port`) to pull from over plain HTTP; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
    /// Routes to the other nodes' pod CIDRs via their InternalIPs (`host-gw`, for nodes on
    /// one network), or `none` (another network plugin routes pods).
    #[arg(long, default_value = "host-gw", value_parser = ["host-gw", "none"])]
    pub pod_routes: String,
    /// The built-in CRI service's registry configuration: `<registry>/hosts.toml` files
    /// (mirrors, CAs, plain HTTP) [default: /etc/kubelet-rs/certs.d].
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// With --apiserver: how long a node may go without renewing its Lease before it is
    /// NotReady (Unknown) and tainted unreachable (kube-controller-manager's flag).
    #[arg(long, default_value = "50s", value_parser = apiserver_lite::control_plane::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the local image store.
    Image(ImageArgs),
    /// Serve the CRI (runtime.v1) runtime and image services on a unix socket until
    /// SIGTERM or SIGINT.
    Cri(CriArgs),
    /// The per-container monitor the CRI service starts (not for people to run).
    #[command(hide = true)]
    Monitor(MonitorCli),
    /// The init of a pod sharing one pid namespace, started by the CRI service (not for people
    /// to run).
    #[command(hide = true)]
    PodInit(PodInitCli),
}

#[derive(Args, Debug)]
pub struct CriArgs {
    /// The gRPC socket [default: <state-dir>/cri.sock, i.e. /run/kubelet-rs/cri.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Persistent state: images, sandboxes, containers.
    #[arg(long, default_value = "/var/lib/kubelet-rs")]
    pub root: PathBuf,
    /// Runtime state a reboot clears.
    #[arg(long, default_value = "/run/kubelet-rs")]
    pub state_dir: PathBuf,
    /// The OCI runtime (runc command line): runtime-rs, runc or crun.
    #[arg(long, default_value = "runtime-rs")]
    pub oci_runtime: PathBuf,
    /// Network configuration lists; the first valid one is the pod network [default: /etc/cni/net.d].
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where CNI plugins are; may be repeated [default: /opt/cni/bin and /usr/lib/cni].
    #[arg(long = "cni-bin-dir", value_name = "DIR")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The CNI result cache [default: /var/lib/cni].
    #[arg(long)]
    pub cni_cache_dir: Option<PathBuf>,
    /// A directory of `<registry>/hosts.toml` files (mirrors, CAs, plain HTTP) [default: /etc/kubelet-rs/certs.d].
    #[arg(long)]
    pub hosts_dir: Option<PathBuf>,
    /// A registry (`host:port`) to reach over plain HTTP; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
}

/// `kubelet-rs monitor`: the arguments of `cri::monitor::MonitorArgs::to_args`, and the
/// descriptor of the channel to the starter.
#[derive(Args, Debug)]
pub struct MonitorCli {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub runtime: PathBuf,
    #[arg(long)]
    pub oci_root: PathBuf,
    #[arg(long)]
    pub log_path: PathBuf,
    #[arg(long)]
    pub exit_file: PathBuf,
    #[arg(long)]
    pub pid_file: PathBuf,
    #[arg(long)]
    pub cgroup_path: Option<PathBuf>,
    #[arg(long)]
    pub tty: bool,
    #[arg(long)]
    pub stdin: bool,
    #[arg(long)]
    pub stdin_once: bool,
    #[arg(long)]
    pub sync_fd: i32,
}

impl MonitorCli {
    pub fn monitor_args(&self) -> kubelet_rs::cri::monitor::MonitorArgs {
        kubelet_rs::cri::monitor::MonitorArgs {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            runtime: self.runtime.clone(),
            oci_root: self.oci_root.clone(),
            log_path: self.log_path.clone(),
            exit_file: self.exit_file.clone(),
            pid_file: self.pid_file.clone(),
            cgroup_path: self.cgroup_path.clone(),
            // Already the monitor's stderr, if any.
            monitor_log: None,
            tty: self.tty,
            stdin: self.stdin,
            stdin_once: self.stdin_once,
        }
    }
}

/// `kubelet-rs pod-init`: the arguments of `cri::sandbox::pod_init::PodInitArgs::to_args`,
/// and the descriptor of the channel to the starter.
#[derive(Args, Debug)]
pub struct PodInitCli {
    #[arg(long)]
    pub sandbox: String,
    #[arg(long)]
    pub net: Option<PathBuf>,
    #[arg(long)]
    pub ipc: Option<PathBuf>,
    #[arg(long)]
    pub uts: Option<PathBuf>,
    #[arg(long)]
    pub tty: bool,
    #[arg(long)]
    pub stdin: bool,
    #[arg(long)]
    pub stdin_once: bool,
    #[arg(long)]
    pub sync_fd: i32,
}

impl PodInitCli {
    pub fn pod_init_args(&self) -> kubelet_rs::cri::sandbox::pod_init::PodInitArgs {
        kubelet_rs::cri::sandbox::pod_init::PodInitArgs {
            sandbox: self.sandbox.clone(),
            net: self.net.clone(),
            ipc: self.ipc.clone(),
            uts: self.uts.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The state root; images are stored under `<root>/images`.
    #[arg(long, default_value = "/var/lib/kubelet-rs", global = true)]
    pub root: PathBuf,
    /// A directory of `<registry>/hosts.toml` files (mirrors, CAs, plain HTTP).
    #[arg(long, default_value = "/etc/kubelet-rs/certs.d", global = true)]
    pub hosts_dir: PathBuf,
    /// A registry (`host:port`) to reach over plain HTTP; may be repeated.
    #[arg(long = "insecure-registry", value_name = "HOST", global = true)]
    pub insecure: Vec<String>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from its registry into the store.
    Pull {
        reference: String,
        /// The platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// Registry credentials `user:password`; default: the Docker config.json.
        #[arg(long)]
        creds: Option<String>,
    },
    /// Import images from an OCI image layout (directory or tar) or a `docker save` tar,
    /// for machines without a registry.
    Import {
        path: std::path::PathBuf,
        /// The name to give the image when the source names none (or to replace its name).
        #[arg(long)]
        name: Option<String>,
        /// The platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
    },
    /// List the stored images.
    List {
        /// Print the names only.
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show an image's record and config as JSON.
    Inspect {
        /// A reference or a manifest digest (`sha256:...`).
        image: String,
    },
    /// Remove image records (content goes with `prune`).
    Remove {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove content no image references.
    Prune,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_rs::cri::monitor::MonitorArgs;

    #[test]
    fn the_monitor_parses_what_its_starter_passes() {
        let args = MonitorArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime: "/usr/bin/runc".into(),
            oci_root: "/run/oci".into(),
            log_path: "/var/log/pods/p/c/0.log".into(),
            exit_file: "/s/exit.json".into(),
            pid_file: "/s/pid".into(),
            cgroup_path: Some("/sys/fs/cgroup/c1".into()),
            monitor_log: None,
            tty: true,
            stdin: true,
            stdin_once: false,
        };
        for args in [args.clone(), MonitorArgs { cgroup_path: None, tty: false, stdin_once: true, ..args }] {
            let mut argv: Vec<std::ffi::OsString> = vec!["kubelet-rs".into(), "monitor".into()];
            argv.extend(args.to_args());
            argv.extend(["--sync-fd".into(), "5".into()]);
            let Some(Command::Monitor(m)) = Cli::try_parse_from(argv).unwrap().command else { panic!("not the monitor") };
            assert_eq!(m.sync_fd, 5);
            assert_eq!(m.monitor_args(), args);
        }
    }

    #[test]
    fn the_pod_init_parses_what_its_starter_passes() {
        use kubelet_rs::cri::sandbox::pod_init::PodInitArgs;
        let args = PodInitArgs { sandbox: "s1".into(), net: Some("/s/ns/net".into()), ipc: None, uts: Some("/s/ns/uts".into()) };
        for args in [args.clone(), PodInitArgs { net: None, uts: None, ..args }] {
            let mut argv: Vec<std::ffi::OsString> = vec!["kubelet-rs".into(), "pod-init".into()];
            argv.extend(args.to_args());
            argv.extend(["--sync-fd".into(), "7".into()]);
            let Some(Command::PodInit(p)) = Cli::try_parse_from(argv).unwrap().command else { panic!("not the pod init") };
            assert_eq!(p.sync_fd, 7);
            assert_eq!(p.pod_init_args(), args);
        }
    }
}
