//! The driver of bench/cri.sh: times one pod's lifecycle through the CRI socket of each
//! target, as the kubelet drives it (RunPodSandbox, CreateContainer, StartContainer,
//! StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox), round after round with
//! the targets interleaved, and prints the median and 90th percentile of every call and of
//! the whole. The services are set up (and torn down) by the script.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use cri_api::tonic::transport::Channel;

const PHASES: [&str; 7] = ["RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"];

#[derive(Parser)]
struct Args {
    /// A service to measure: NAME=SOCKET=CGROUP_PARENT (the pods' linux.cgroup_parent as
    /// that service's runtime sees the cgroup tree). Repeat for each.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The container image (present in every service: no pulls are timed).
    #[arg(long)]
    image: String,
    /// Where pods' log directories go (one per target and round).
    #[arg(long)]
    log_dir: PathBuf,
    /// Timed rounds per target.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed rounds per target first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Write every sample (milliseconds per phase) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Target {
    name: String,
    cgroup_parent: String,
    client: RuntimeServiceClient<Channel>,
    /// samples[phase][round], in milliseconds; the last phase is the total.
    samples: Vec<Vec<f64>>,
}

fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption { network: cri::NamespaceMode::Pod as i32, pid: cri::NamespaceMode::Container as i32, ipc: cri::NamespaceMode::Pod as i32, ..Default::default() }
}

fn pod_config(t: &Target, args: &Args, round: usize) -> cri::PodSandboxConfig {
    let name = format!("bench-{round}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.clone(), uid: format!("uid-{}-{round}", t.name), namespace: "default".into(), attempt: 0 }),
        hostname: name.clone(),
        log_directory: args.log_dir.join(&t.name).join(&name).display().to_string(),
        port_mappings: vec![cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() }],
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: t.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
        // Exits 0 on SIGTERM at once (wait is interrupted by the trap), so StopContainer
        // measures the stop, not a grace period.
        command: vec!["sh".into(), "-c".into(), "trap 'exit 0' TERM; sleep 1000 & wait".into()],
        log_path: "app.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

type Result<T> = std::result::Result<T, String>;

fn err(name: &str, what: &'static str) -> impl Fn(cri_api::tonic::Status) -> String {
    let name = name.to_string();
    move |e| format!("{name}: {what}: {e}")
}

/// One pod's lifecycle; the time of each call in milliseconds.
async fn round(t: &mut Target, args: &Args, n: usize) -> Result<[f64; 7]> {
    let config = pod_config(t, args, n);
    let mut times = [0.0; 7];
    let mut clock = Instant::now();
    let mut lap = |i: usize| {
        times[i] = clock.elapsed().as_secs_f64() * 1000.0;
        clock = Instant::now();
    };
    let name = t.name.clone();
    let c = &mut t.client;
    let pod = c
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .map_err(err(&name, "RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    lap(0);
    let ctr = c
        .create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container_config(&args.image)), sandbox_config: Some(config) })
        .await
        .map_err(err(&name, "CreateContainer"))?
        .into_inner()
        .container_id;
    lap(1);
    c.start_container(cri::StartContainerRequest { container_id: ctr.clone() }).await.map_err(err(&name, "StartContainer"))?;
    lap(2);
    c.stop_container(cri::StopContainerRequest { container_id: ctr.clone(), timeout: 10 }).await.map_err(err(&name, "StopContainer"))?;
    lap(3);
    c.remove_container(cri::RemoveContainerRequest { container_id: ctr.clone() }).await.map_err(err(&name, "RemoveContainer"))?;
    lap(4);
    c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.map_err(err(&name, "StopPodSandbox"))?;
    lap(5);
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.map_err(err(&name, "RemovePodSandbox"))?;
    lap(6);
    Ok(times)
}

/// Wait until the service answers and says its network is ready (it has loaded the conflist).
async fn ready(client: &mut RuntimeServiceClient<Channel>, name: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let status = client.status(cri::StatusRequest { verbose: false }).await.map_err(|e| format!("{name}: Status: {e}"))?.into_inner();
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|k| k.r#type == "NetworkReady" && k.status) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{name}: network not ready after 30s: {conditions:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The q-quantile (nearest rank) of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn run(args: Args) -> Result<()> {
    let mut targets = Vec::new();
    for spec in &args.targets {
        let parts: Vec<&str> = spec.splitn(3, '=').collect();
        let [name, socket, cgroup_parent] = parts[..] else {
            return Err(format!("--target {spec:?}: expected NAME=SOCKET=CGROUP_PARENT"));
        };
        let channel = cri_api::connect(socket).await.map_err(|e| format!("{name}: connect {socket}: {e}"))?;
        let mut client = RuntimeServiceClient::new(channel);
        ready(&mut client, name).await?;
        targets.push(Target { name: name.into(), cgroup_parent: cgroup_parent.into(), client, samples: vec![Vec::new(); PHASES.len() + 1] });
    }
    for n in 0..args.warmup + args.runs {
        for t in targets.iter_mut() {
            let times = round(t, &args, n).await?;
            if n >= args.warmup {
                for (i, ms) in times.iter().enumerate() {
                    t.samples[i].push(*ms);
                }
                t.samples[PHASES.len()].push(times.iter().sum());
            }
        }
        eprint!("\rround {}/{}", n + 1, args.warmup + args.runs);
    }
    eprintln!();

    println!("median (p90) in ms over {} rounds, after {} warm-up rounds", args.runs, args.warmup);
    print!("| call |");
    for t in &targets {
        print!(" {} |", t.name);
    }
    if targets.len() == 2 {
        print!(" {} / {} (medians) |", targets[1].name, targets[0].name);
    }
    println!();
    println!("|---|{}", "---|".repeat(targets.len() + usize::from(targets.len() == 2)));
    for (i, phase) in PHASES.iter().chain(["total"].iter()).enumerate() {
        print!("| {phase} |");
        let mut medians = Vec::new();
        for t in targets.iter_mut() {
            t.samples[i].sort_by(f64::total_cmp);
            let (m, p90) = (quantile(&t.samples[i], 0.5), quantile(&t.samples[i], 0.9));
            medians.push(m);
            print!(" {m:.1} ({p90:.1}) |");
        }
        if medians.len() == 2 {
            print!(" {:.2}× |", medians[1] / medians[0]);
        }
        println!();
    }
    if let Some(path) = &args.json {
        let doc: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|t| {
                let phases: serde_json::Map<String, serde_json::Value> =
                    PHASES.iter().chain(["total"].iter()).zip(&t.samples).map(|(p, s)| (p.to_string(), serde_json::json!(s))).collect();
                (t.name.clone(), serde_json::Value::Object(phases))
            })
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("krs-bench-cri: {e}");
        std::process::exit(1);
    }
}
