//! Benchmark driver for the cgroup v2 test guest (`bench/limits.sh` boots the guest and runs
//! it there): for each runtime, side by side in one run,
//!   - create + start + wait + delete of a busybox `/bin/true` bundle whose spec sets a memory
//!     and a pids limit (so the runtime writes real controller files), and `run` of it;
//!   - the smallest `linux.resources.memory.limit` (memory.max) at which `run` of that bundle
//!     still succeeds, found by bisection: how much memory the runtime's own process in the
//!     container's cgroup needs before it hands over to the container's program.
//!
//! It prints a Markdown table. Everything it makes (cgroups under its own parent, bundles,
//! state) is removed before it exits.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// A busybox root filesystem (scripts/build-busybox-rootfs.sh).
    #[arg(long)]
    rootfs: PathBuf,
    /// Scratch directory for bundles and state; removed at the end.
    #[arg(long)]
    work: PathBuf,
    /// NAME=PATH of a runtime with runc's command line; repeat.
    #[arg(long = "runtime", value_parser = parse_runtime, required = true)]
    runtimes: Vec<(String, PathBuf)>,
    /// Timed rounds per runtime and measure.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// memory.max of the timed bundle, bytes.
    #[arg(long, default_value_t = 64 << 20)]
    memory: i64,
    /// pids.max of the timed bundle.
    #[arg(long, default_value_t = 128)]
    pids: i64,
    /// cgroup the containers go under (created and removed by us).
    #[arg(long, default_value = "/sys/fs/cgroup/krs-bench")]
    cgroup: PathBuf,
    /// Bisection range and resolution for the smallest memory.max, bytes.
    #[arg(long, default_value_t = 128 << 10)]
    search_min: i64,
    #[arg(long, default_value_t = 64 << 20)]
    search_max: i64,
    #[arg(long, default_value_t = 64 << 10)]
    search_step: i64,
}

fn parse_runtime(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=PATH"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

struct Runtime {
    name: String,
    path: PathBuf,
    state: PathBuf,
    version: String,
}

impl Runtime {
    /// The command with stdin and stdout on /dev/null and stderr in a file: never a pipe,
    /// which a container's init inherits and holds open until it exits.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.state).args(args);
        let err = fs::File::create(self.stderr_file()).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        c
    }

    fn stderr_file(&self) -> PathBuf {
        self.state.with_extension("stderr")
    }

    fn ok(&self, args: &[&str]) -> Result<(), String> {
        let status = self.cmd(args).status().map_err(|e| format!("{}: {e}", self.path.display()))?;
        if status.success() {
            Ok(())
        } else {
            let err = fs::read_to_string(self.stderr_file()).unwrap_or_default();
            Err(format!("{} {}: {} {}", self.name, args.join(" "), status, err.lines().last().unwrap_or("")))
        }
    }

    /// Best effort: remove a container left by a failed attempt.
    fn force_delete(&self, id: &str) {
        let _ = self.cmd(&["delete", "--force", id]).status();
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("krs-bench-limits: {e}");
        cleanup(&args);
        std::process::exit(1);
    }
    cleanup(&args);
}

fn cleanup(args: &Args) {
    remove_cgroup_tree(&args.cgroup);
    let _ = fs::remove_dir_all(&args.work);
}

fn run(args: &Args) -> Result<(), String> {
    // Container inits orphaned by `create` come to us, so "wait" is a plain waitpid.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    fs::create_dir_all(&args.work).map_err(|e| format!("{}: {e}", args.work.display()))?;
    fs::create_dir(&args.cgroup).map_err(|e| format!("create {}: {e}", args.cgroup.display()))?;
    fs::write(args.cgroup.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(|e| format!("enable memory and pids in {}: {e}", args.cgroup.display()))?;
    let cgroup_name = args.cgroup.file_name().unwrap().to_string_lossy().into_owned();

    let runtimes: Vec<Runtime> = args
        .runtimes
        .iter()
        .map(|(name, path)| {
            let out = Command::new(path).arg("--version").output().map_err(|e| format!("{}: {e}", path.display()))?;
            let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("?").to_string();
            let state = args.work.join(format!("state-{name}"));
            fs::create_dir_all(&state).map_err(|e| e.to_string())?;
            Ok(Runtime { name: name.clone(), path: path.clone(), state, version })
        })
        .collect::<Result<_, String>>()?;
    let base = base_spec(&runtimes[0], &args.work)?;
    let bundle = |rt: &Runtime, case: &str, memory: i64| -> Result<PathBuf, String> {
        let mut spec = base.clone();
        spec["ociVersion"] = json!("1.0.2");
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["/bin/true"]);
        spec["root"] = json!({"path": args.rootfs, "readonly": true});
        spec["linux"]["cgroupsPath"] = json!(format!("/{cgroup_name}/{}-{case}", rt.name));
        let resources = spec["linux"]["resources"].as_object_mut().map(|o| o.clone()).unwrap_or_default();
        let mut resources = Value::Object(resources);
        resources["memory"] = json!({"limit": memory});
        resources["pids"] = json!({"limit": args.pids});
        spec["linux"]["resources"] = resources;
        let dir = args.work.join(format!("bundle-{}-{case}", rt.name));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).map_err(|e| e.to_string())?;
        Ok(dir)
    };

    // Timed rounds, interleaved across runtimes so drift hits each alike.
    let mut lifecycle: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut failed: Vec<Option<String>> = vec![None; runtimes.len()];
    let bundles: Vec<PathBuf> = runtimes.iter().map(|rt| bundle(rt, "timed", args.memory)).collect::<Result<_, _>>()?;
    for round in 0..args.warmup + args.runs {
        eprintln!("krs-bench-limits: timed round {}/{}", round + 1, args.warmup + args.runs);
        for (i, rt) in runtimes.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let id = format!("lc{round}");
            match time_lifecycle(rt, &bundles[i], &id).and_then(|l| time_run(rt, &bundles[i], &format!("run{round}")).map(|r| (l, r))) {
                Ok((l, r)) if round >= args.warmup => {
                    lifecycle[i].push(l);
                    runs[i].push(r);
                }
                Ok(_) => {}
                Err(e) => {
                    rt.force_delete(&id);
                    failed[i] = Some(e);
                }
            }
        }
    }

    println!("memory.max {} MiB and pids.max {} in every timed bundle; {} timed rounds after {} warm-up, interleaved", args.memory >> 20, args.pids, args.runs, args.warmup);
    println!();
    println!("| runtime | version | create+start+wait+delete, ms median (p10–p90) | run, ms median (p10–p90) | smallest memory.max for `run`, KiB |");
    println!("|---|---|---|---|---|");
    for (i, rt) in runtimes.iter().enumerate() {
        eprintln!("krs-bench-limits: searching the smallest memory.max for {}", rt.name);
        let min = smallest_memory(args, rt, |m| bundle(rt, "min", m));
        let min = match min {
            Ok(Some(bytes)) => format!("{}", bytes >> 10),
            Ok(None) => format!("> {} (fails at the top of the range)", args.search_max >> 10),
            Err(e) => format!("error: {e}"),
        };
        match &failed[i] {
            Some(e) => println!("| {} | {} | failed: {e} | | {min} |", rt.name, rt.version),
            None => println!("| {} | {} | {} | {} | {min} |", rt.name, rt.version, summary(&lifecycle[i]), summary(&runs[i])),
        }
    }
    Ok(())
}

/// The spec the first runtime writes with `spec`.
fn base_spec(rt: &Runtime, work: &Path) -> Result<Value, String> {
    let dir = work.join("spec");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = Command::new(&rt.path).arg("spec").current_dir(&dir).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{} spec: {}", rt.name, String::from_utf8_lossy(&out.stderr)));
    }
    let text = fs::read(dir.join("config.json")).map_err(|e| e.to_string())?;
    serde_json::from_slice(&text).map_err(|e| e.to_string())
}

fn time_lifecycle(rt: &Runtime, bundle: &Path, id: &str) -> Result<Duration, String> {
    let pid_file = rt.state.join(format!("{id}.pid"));
    let start = Instant::now();
    rt.ok(&["create", "--bundle", bundle.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), id])?;
    let pid: i32 = fs::read_to_string(&pid_file).map_err(|e| e.to_string())?.trim().parse().map_err(|e| format!("pid file: {e}"))?;
    rt.ok(&["start", id])?;
    wait_exit(pid);
    rt.ok(&["delete", id])?;
    let took = start.elapsed();
    let _ = fs::remove_file(pid_file);
    Ok(took)
}

fn time_run(rt: &Runtime, bundle: &Path, id: &str) -> Result<Duration, String> {
    let start = Instant::now();
    rt.ok(&["run", "--bundle", bundle.to_str().unwrap(), id])?;
    Ok(start.elapsed())
}

/// Wait for a container init that was reparented to us; poll if it was not.
fn wait_exit(pid: i32) {
    let mut status = 0;
    if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
        return;
    }
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The smallest memory limit (a multiple of the step) at which `run` succeeds twice in a row;
/// `None` when even the top of the range fails.
fn smallest_memory(args: &Args, rt: &Runtime, bundle: impl Fn(i64) -> Result<PathBuf, String>) -> Result<Option<i64>, String> {
    let mut attempt = 0;
    let mut works = |memory: i64| -> Result<bool, String> {
        let b = bundle(memory)?;
        for _ in 0..2 {
            attempt += 1;
            let id = format!("min{attempt}");
            if rt.ok(&["run", "--bundle", b.to_str().unwrap(), &id]).is_err() {
                rt.force_delete(&id);
                // A runtime killed by the OOM killer may leave its cgroup behind.
                remove_cgroup_tree(&args.cgroup.join(format!("{}-min", rt.name)));
                return Ok(false);
            }
        }
        Ok(true)
    };
    let step = args.search_step;
    let (mut lo, mut hi) = (args.search_min / step, args.search_max / step);
    if !works(hi * step)? {
        return Ok(None);
    }
    if works(lo * step)? {
        return Ok(Some(lo * step));
    }
    // Invariant: lo fails, hi works.
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if works(mid * step)? { hi = mid } else { lo = mid }
    }
    Ok(Some(hi * step))
}

fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    format!("{:.1} ({:.1}–{:.1})", at(0.5), at(0.1), at(0.9))
}

/// Remove a cgroup and its descendants, deepest first, killing what is left in them.
fn remove_cgroup_tree(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..100 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("krs-bench-limits: could not remove {}", dir.display());
}
