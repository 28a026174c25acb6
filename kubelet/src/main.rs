//! `kubelet-rs`: the node binary. Without a subcommand it is the node agent (with
//! `--apiserver`, a whole single-node cluster: `node_command.rs`). Its `image` commands manage the local image store; `cri`
//! serves the CRI runtime and image services; the hidden `monitor` command is the
//! per-container monitor the CRI service starts, and `pod-init` the init of a pod that shares
//! one pid namespace.
mod cli;
mod cri_command;
mod image;
mod node_command;
mod progress;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    // The agent is a daemon and logs what it does; the other commands only their errors.
    let default_level = if args.command.is_none() { tracing::Level::INFO } else { tracing::Level::ERROR };
    let level = match std::env::var("KUBELET_RS_LOG").ok().as_deref() {
        Some("debug") => tracing::Level::DEBUG,
        Some("info") => tracing::Level::INFO,
        Some("warn") => tracing::Level::WARN,
        Some("error") => tracing::Level::ERROR,
        _ if std::env::var_os("KUBELET_RS_DEBUG").is_some() => tracing::Level::DEBUG,
        _ => default_level,
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).init();
    // The monitor forks first thing, so it must run before any runtime starts threads.
    if let Some(cli::Command::Monitor(m)) = &args.command {
        std::process::exit(kubelet_rs::cri::monitor::process::run(&m.monitor_args(), m.sync_fd));
    }
    // So does the pod init (and it enters namespaces, which a threaded process cannot).
    if let Some(cli::Command::PodInit(p)) = &args.command {
        std::process::exit(kubelet_rs::cri::sandbox::pod_init::process::run(&p.pod_init_args(), p.sync_fd));
    }
    let result = match args.command {
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(node_command::run(args.agent)).map_err(|e| e.to_string())
        }
        Some(cli::Command::Image(img)) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(image::run(img)).map_err(|e| e.to_string())
        }
        Some(cli::Command::Cri(cri_args)) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(cri_command::run(cri_args)).map_err(|e| e.to_string())
        }
        Some(cli::Command::Monitor(_) | cli::Command::PodInit(_)) => unreachable!("handled above"),
    };
    if let Err(e) = result {
        eprintln!("kubelet-rs: {e}");
        std::process::exit(1);
    }
}
