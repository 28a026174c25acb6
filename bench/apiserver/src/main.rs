//! The driver of bench/apiserver.sh: the same workload (creates, gets, lists, watch latency,
//! resident memory) against each target in turn: apiserver-lite over HTTPS with a
//! kubeconfig's client certificate, or etcd alone through its client API as the floor.
//! The processes are started (and stopped) by the script; this prints the tables.

mod apiserver;
mod backend;
mod etcd;
mod kubeconfig;
mod pod;
mod report;
mod rss;
mod stats;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// What to measure: NAME=apiserver=KUBECONFIG=PID[,PID] or NAME=etcd=URL=PID. The
    /// first PID is the server whose memory is reported; a second (the etcd behind an API
    /// server) is reported beside it. Targets run one after another, in this order.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Pods created (and then read back, listed) per target.
    #[arg(long, default_value_t = 10_000)]
    creates: usize,
    /// Concurrent clients for creates and gets.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Timed lists of all pods (and as many paged lists).
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Page size of the paged lists.
    #[arg(long, default_value_t = 500)]
    page: usize,
    /// Creates made one at a time with a watch open.
    #[arg(long, default_value_t = 300)]
    watch_events: usize,
    /// Idle seconds before the last memory reading.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Write the figures (and every latency sample) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    ApiServer { kubeconfig: PathBuf },
    Etcd { endpoint: String },
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub pids: Vec<u32>,
}

fn parse_target(s: &str) -> Result<Target, String> {
    let parts: Vec<&str> = s.splitn(4, '=').collect();
    let [name, kind, address, pids] = parts[..] else {
        return Err(format!("--target {s:?}: expected NAME=apiserver=KUBECONFIG=PID or NAME=etcd=URL=PID"));
    };
    let pids = pids.split(',').map(|p| p.parse::<u32>().map_err(|_| format!("--target {s:?}: {p:?} is not a pid"))).collect::<Result<Vec<_>, _>>()?;
    let kind = match kind {
        "apiserver" => Kind::ApiServer { kubeconfig: address.into() },
        "etcd" => Kind::Etcd { endpoint: address.into() },
        other => return Err(format!("--target {s:?}: the kind must be apiserver or etcd, not {other:?}")),
    };
    Ok(Target { name: name.to_string(), kind, pids })
}

async fn measure(target: &Target, config: &workload::Config) -> Result<(workload::Report, String), String> {
    let namespace = "bench";
    match &target.kind {
        Kind::ApiServer { kubeconfig } => {
            let access = kubeconfig::load(kubeconfig).map_err(|e| e.to_string())?;
            let api = apiserver::ApiServer::new(&access, namespace).map_err(|e| e.to_string())?;
            let protocol = api.protocol().await.map_err(|e| e.to_string())?;
            let report = workload::run(&api, config, &target.pids).await.map_err(|e| e.to_string())?;
            Ok((report, protocol))
        }
        Kind::Etcd { endpoint } => {
            let etcd = etcd::Etcd::connect(endpoint, namespace).await.map_err(|e| e.to_string())?;
            let report = workload::run(&etcd, config, &target.pids).await.map_err(|e| e.to_string())?;
            Ok((report, "gRPC (HTTP/2, plain)".into()))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let targets: Vec<Target> = match args.targets.iter().map(|t| parse_target(t)).collect() {
        Ok(t) => t,
        Err(e) => fail(&e),
    };
    let config = workload::Config {
        creates: args.creates,
        concurrency: args.concurrency,
        lists: args.lists,
        page: args.page,
        watch_events: args.watch_events,
        idle: Duration::from_secs(args.idle_secs),
    };
    let mut results = Vec::new();
    let mut failure = None;
    for target in &targets {
        eprintln!("{}:", target.name);
        match measure(target, &config).await {
            Ok((report, protocol)) => results.push((target.clone(), protocol, report)),
            Err(e) => {
                failure = Some(format!("{}: {e}", target.name));
                break;
            }
        }
    }
    // The targets measured before a failure are still worth seeing.
    print!("{}", report::tables(&config, &results));
    if let Some(path) = &args.json {
        let json = report::json(&config, &results);
        if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&json).expect("JSON serializes")) {
            fail(&format!("writing {}: {e}", path.display()));
        }
    }
    if let Some(message) = failure {
        fail(&message);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("krs-bench-apiserver: {message}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("lite-etcd=apiserver=/tmp/x/admin.kubeconfig=12,34").unwrap();
        assert_eq!((t.name.as_str(), t.pids.as_slice()), ("lite-etcd", &[12, 34][..]));
        assert!(matches!(t.kind, Kind::ApiServer { kubeconfig } if kubeconfig.as_path() == std::path::Path::new("/tmp/x/admin.kubeconfig")));
        let t = parse_target("etcd=etcd=http://127.0.0.1:2379=5").unwrap();
        assert!(matches!(t.kind, Kind::Etcd { endpoint } if endpoint == "http://127.0.0.1:2379"));
        assert!(parse_target("x=apiserver=/k").is_err());
        assert!(parse_target("x=redis=/k=1").is_err());
        assert!(parse_target("x=etcd=http://h=abc").is_err());
    }
}
