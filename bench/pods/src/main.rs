//! Pod startup latency, as the Kubernetes SIG Scalability "pod startup" SLI measures it:
//! from the client's create to the pod observed Running (all containers started) through a
//! watch, with the image already on the node. For each runtime (kubelet-rs's own CRI service,
//! then containerd 1.6 + runc driven by the same agent): one pod at a time (`--single` runs),
//! then a batch created at once (`--batch` pods); p50/p99/max of each, and the resident memory
//! of the processes afterwards. Run as root through bench/pods.sh (release build).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use test_support::cluster::{Cluster, Runtime};

#[derive(Parser)]
struct Args {
    /// Pods started one after another.
    #[arg(long, default_value_t = 20)]
    single: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 30)]
    batch: usize,
    /// Only this runtime: builtin or containerd.
    #[arg(long)]
    runtime: Option<String>,
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
    }))
    .expect("pod JSON")
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running") && s.container_statuses.iter().flatten().all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
    })
}

/// Create `names` at once and wait for each to be Running; their latencies.
async fn start_pods(pods: &kube::Api<Pod>, names: &[String], image: &str) -> Vec<Duration> {
    let mut stream = watcher::watcher(pods.clone(), watcher::Config::default().labels("bench=startup")).boxed();
    // The watch is established before the creates (its initial list completes first).
    while let Some(Ok(e)) = stream.next().await {
        if matches!(e, watcher::Event::InitDone) {
            break;
        }
    }
    let mut created: HashMap<String, Instant> = HashMap::new();
    let creates = names.iter().map(|n| {
        let (pods, n) = (pods.clone(), n.clone());
        let p = pod(&n, image);
        async move {
            let t0 = Instant::now();
            pods.create(&PostParams::default(), &p).await.expect("create pod");
            (n, t0)
        }
    });
    for (n, t0) in futures_util::future::join_all(creates).await {
        created.insert(n, t0);
    }
    let mut latencies = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < names.len() {
        let event = tokio::time::timeout_at(deadline.into(), stream.next()).await.expect("pods did not start within 300 s");
        if let Some(Ok(watcher::Event::Apply(p))) = event {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some(t0) = created.get(&name)
                && running(&p)
                && !latencies.contains_key(&name)
            {
                latencies.insert(name, t0.elapsed());
            }
        }
    }
    latencies.into_values().collect()
}

async fn delete_all(pods: &kube::Api<Pod>) {
    let _ = pods.delete_collection(&DeleteParams { grace_period_seconds: Some(0), ..Default::default() }, &ListParams::default().labels("bench=startup")).await;
    for _ in 0..600 {
        if pods.list(&ListParams::default().labels("bench=startup")).await.map(|l| l.items.is_empty()).unwrap_or(false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("  {what:<22} n={:<3} p50={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms", v.len(), ms(percentile(&v, 0.5)), ms(percentile(&v, 0.99)), ms(*v.last().unwrap()));
}

/// VmRSS of a process and its descendants (containerd's shims), in MiB.
fn rss_mib(pid: u32, with_children: bool) -> f64 {
    let read = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    let mut total = read(pid);
    if with_children {
        // Every process whose parent chain reaches `pid`.
        let mut parents: HashMap<u32, u32> = HashMap::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(p) = e.file_name().to_string_lossy().parse::<u32>()
                && let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(after) = stat.rsplit_once(") ")
                && let Some(ppid) = after.1.split_whitespace().nth(1).and_then(|v| v.parse().ok())
            {
                parents.insert(p, ppid);
            }
        }
        for (&p, _) in parents.iter() {
            let mut q = p;
            while let Some(&pp) = parents.get(&q) {
                if pp == pid {
                    total += read(p);
                    break;
                }
                if pp <= 1 {
                    break;
                }
                q = pp;
            }
        }
    }
    total as f64 / 1024.0
}

async fn run(runtime: Runtime, args: &Args) {
    let cluster = tokio::task::block_in_place(|| Cluster::start_with(runtime));
    let config = kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(&cluster.kubectl.kubeconfig).unwrap(), &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
    // Warm up: the image is pulled once, then present for every measured pod.
    start_pods(&pods, &["warmup".to_string()], &cluster.busybox).await;
    delete_all(&pods).await;
    println!("{runtime:?}:");
    let mut single = Vec::new();
    for i in 0..args.single {
        single.extend(start_pods(&pods, &[format!("single-{i}")], &cluster.busybox).await);
        delete_all(&pods).await;
    }
    report("1 pod at a time", single);
    let names: Vec<String> = (0..args.batch).map(|i| format!("batch-{i}")).collect();
    report(&format!("{} pods at once", args.batch), start_pods(&pods, &names, &cluster.busybox).await);
    let kubelet = cluster.pid().map(|p| rss_mib(p, false)).unwrap_or(0.0);
    match cluster.containerd_pid() {
        Some(c) => println!("  memory with {} pods: kubelet-rs --apiserver {kubelet:.1} MiB (agent, API server, controllers); containerd + shims {:.1} MiB", args.batch, rss_mib(c as u32, true)),
        None => println!("  memory with {} pods: kubelet-rs --apiserver {kubelet:.1} MiB (agent, API server, controllers, CRI service; per-container monitors not counted)", args.batch),
    }
    delete_all(&pods).await;
    tokio::task::block_in_place(|| drop(cluster));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    for (name, runtime) in [("builtin", Runtime::Builtin), ("containerd", Runtime::Containerd)] {
        if args.runtime.as_deref().is_none_or(|r| r == name) {
            run(runtime, &args).await;
        }
    }
}
