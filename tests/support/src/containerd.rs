//! A private containerd with its CRI plugin on, for tests that drive it as the kubelet would
//! (through `cri-api`) and see it run CNI plugins. Root only.
//!
//! Everything of it is the test's own: config, root, state and the gRPC socket live in a
//! `krs-ctrd-*` directory under the temporary directory. It runs in a mount namespace of its
//! own where `/run` is a fresh tmpfs and `/var/lib` an overlay writing into that directory,
//! so shim sockets, runc's state, the network namespace files CRI makes
//! (`/var/run/netns/cni-*`) and libcni's result cache (`/var/lib/cni`), like the overlay and
//! shm mounts under its root, never show on the host and go away with its last process.
//!
//! Cgroups: it runs in a cgroup v2 directory of its own, `krs-ctrd-*`, which in that mount
//! namespace is bind-mounted over `/sys/fs/cgroup` and is the root of a cgroup namespace, so
//! runc sees a pure cgroup v2 host and every shim and container lands below our directory;
//! the host's cgroups (the v1 hierarchies of a hybrid host above all) are never touched.
//! A hybrid host's v2 hierarchy may lack the cpu controller, and CRI gives every pod sandbox
//! cpu shares: runc is therefore called through a wrapper ([`RUNC_WRAPPER`]) that drops
//! `linux.resources.cpu` from a bundle before `runc create`.
//!
//! Dropping it stops containerd by its pid, kills whatever is left in its cgroup, removes the
//! cgroups, unmounts anything under its directory that reached the host, and
//! removes the directory. The network is not this guard's: the CNI plugins containerd runs
//! work in the host's network namespace, so the test cleans up what they make there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{cgroup2_root, mounts_under, run_captured, text, CgroupParent};

/// The name CRI's `sandbox_image` is set to; [`Containerd::import_pause_image`] imports it.
pub const PAUSE_IMAGE: &str = "localhost/krs-pause:1";
/// The busybox image of scripts/build-busybox-image.sh, for containers in a pod.
pub const BUSYBOX_IMAGE: &str = "localhost/krs-busybox:latest";
/// The containerd namespace of CRI: images for pods are imported there.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The pause image's command: busybox's sh sleeping until SIGTERM, on which it exits 0.
const PAUSE_CMD: &str = r#"["/bin/sh","-c","trap 'exit 0' TERM; while :; do sleep 1; done"]"#;

/// What the CRI plugin is told about CNI.
pub struct CriOptions {
    /// Where the CNI plugin binaries are (`cni.bin_dir`).
    pub cni_bin_dir: PathBuf,
    /// Where the network configuration lists are (`cni.conf_dir`); CRI uses the first.
    pub cni_conf_dir: PathBuf,
    /// Run containerd in this network namespace (its pods' bridge then lives there too).
    pub net_ns: Option<PathBuf>,
    /// Registries (`host:port`) CRI pulls from over plain HTTP.
    pub insecure_registries: Vec<String>,
}

/// Panic with the package to install unless containerd's programs are on PATH.
pub fn require_containerd() {
    for prog in ["containerd", "ctr", "containerd-shim-runc-v2", "runc"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false);
        assert!(found, "{prog} is not installed: this test needs containerd and runc (apt-get install containerd runc)");
    }
}

/// runc, except that `create` first drops `linux.resources.cpu` from the bundle's config.json:
/// the host's cgroup v2 may have no cpu controller, and CRI sets cpu shares on every sandbox.
pub const RUNC_WRAPPER: &str = r#"#!/bin/sh
case " $* " in *" create "*)
    bundle=; prev=
    for a; do case "$prev" in --bundle|-b) bundle=$a;; esac; prev=$a; done
    [ -n "$bundle" ] && python3 -c 'import json, sys
p = sys.argv[1]; spec = json.load(open(p))
spec.get("linux", {}).get("resources", {}).pop("cpu", None)
json.dump(spec, open(p, "w"))' "$bundle/config.json"
esac
exec runc "$@"
"#;

/// A containerd of the test's own with the CRI plugin; see the module documentation.
pub struct Containerd {
    /// `krs-ctrd-<pid>-<n>`: the directory's, the cgroup's and the pods' cgroup parent's name.
    pub name: String,
    pub dir: PathBuf,
    /// The gRPC socket: containerd's API and CRI's `runtime.v1` services.
    pub socket: PathBuf,
    child: Option<Child>,
    cgroup: Option<CgroupParent>,
}

impl Containerd {
    /// Start it and wait until it answers; panics (after cleaning up) if it does not.
    pub fn start(cri: &CriOptions) -> Containerd {
        require_containerd();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("krs-ctrd-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir(&dir).expect("create the containerd directory");
        // Each thing made goes into the guard at once, so a failure below still removes it.
        let mut c = Containerd { socket: dir.join("containerd.sock"), name: name.clone(), dir, child: None, cgroup: None };
        let cg_path = cgroup2_root().join(&name);
        fs::create_dir(&cg_path).expect("create containerd's cgroup");
        c.cgroup = Some(CgroupParent { name, path: cg_path.clone() });
        fs::create_dir(cg_path.join("ctrd")).expect("create the ctrd leaf cgroup");
        let config = c.dir.join("config.toml");
        fs::write(&config, c.config(cri)).unwrap();
        let log = fs::File::create(c.log_path()).unwrap();

        // sh moves itself into our cgroup, then unshare makes the mount namespace, where a
        // tmpfs covers /run, and /var/lib is an overlay whose writes land in our directory:
        // containerd 1.6 cannot be told where libcni caches results, /var/lib/cni. Each step
        // execs the next, so the pid we hold is containerd's.
        let var_lib = c.dir.join("var-lib");
        for d in ["upper", "work"] {
            fs::create_dir_all(var_lib.join(d)).unwrap();
        }
        let wrapper = c.dir.join("runc-wrapper");
        fs::write(&wrapper, RUNC_WRAPPER).unwrap();
        fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let inner = r#"mount --bind "$KRS_CG" /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/ctrd/cgroup.procs && mount -t tmpfs -o mode=0755 krs-ctrd-run /run && mount -t overlay -o "lowerdir=/var/lib,upperdir=$KRS_VARLIB/upper,workdir=$KRS_VARLIB/work" krs-ctrd-var-lib /var/lib && exec containerd --config "$KRS_CONFIG""#;
        let outer = r#"echo $$ > "$KRS_CG/cgroup.procs" && exec unshare --mount --propagation private --cgroup sh -c "$KRS_INNER""#;
        let mut cmd = match &cri.net_ns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.display())).args(["--", "sh"]);
                cmd
            }
            None => Command::new("sh"),
        };
        let child = cmd
            .args(["-c", outer])
            .env("KRS_CG", &cg_path)
            .env("KRS_CONFIG", &config)
            .env("KRS_INNER", inner)
            .env("KRS_VARLIB", &var_lib)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        c.child = Some(child);
        c.wait_ready();
        c
    }

    fn config(&self, cri: &CriOptions) -> String {
        let d = self.dir.display();
        // No snapshotters that probe the host; nothing written outside our directory. CRI's
        // own state goes under root and state; its streaming server takes a random
        // loopback port.
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{d}/containerd.sock"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pods may not get a lower oom_score_adj than containerd's own: the sandbox's -998 needs
  # CAP_SYS_RESOURCE, which a test machine's root may lack (runc then fails with "failed to
  # update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{d}/runc-wrapper"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
{mirrors}"#,
            bin = cri.cni_bin_dir.display(),
            conf = cri.cni_conf_dir.display(),
            mirrors = cri
                .insecure_registries
                .iter()
                .map(|r| format!("  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"{r}\"]\n    endpoint = [\"http://{r}\"]\n"))
                .collect::<String>(),
        )
    }

    /// The pods' `linux.cgroup_parent`: our cgroup, so their processes stay in it.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.name)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("containerd is running").id() as i32
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let all = fs::read_to_string(self.log_path()).unwrap_or_default();
        let v: Vec<&str> = all.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("containerd exited ({st}) before it was ready:\n{}", self.log_tail(40));
            }
            if self.socket.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "containerd was not ready after 30s:\n{}", self.log_tail(40));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr` against our containerd, in CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket).args(["--namespace", CRI_NAMESPACE]).args(args).stdin(Stdio::null());
        run_captured(c, args)
    }

    /// `ctr` that must succeed; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.log_tail(40)
        );
        text(&out.stdout)
    }

    /// Build the busybox image (scripts/build-busybox-image.sh) as `name` with `cmd` (a JSON
    /// array) and import it into CRI's namespace.
    pub fn import_busybox_image(&self, name: &str, cmd: &str) {
        let tar = self.dir.join(format!("image-{}.tar", name.replace(['/', ':'], "_")));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
        let mut sh = Command::new("sh");
        sh.arg(&script).arg(&tar).arg(name).arg(cmd).stdin(Stdio::null());
        let out = run_captured(sh, &["build-busybox-image.sh"]);
        assert!(out.status.success(), "{} failed:\n{}", script.display(), text(&out.stderr));
        self.ctr_ok(&["images", "import", tar.to_str().expect("a UTF-8 temporary directory")]);
        let _ = fs::remove_file(&tar);
    }

    /// Import the pause image CRI's `sandbox_image` names ([`PAUSE_IMAGE`]).
    pub fn import_pause_image(&self) {
        self.import_busybox_image(PAUSE_IMAGE, PAUSE_CMD);
    }

    /// Stop everything and require that nothing is left behind.
    pub fn shutdown(mut self) {
        let dir = self.dir.clone();
        let cgroups = self.cgroup_dirs();
        self.stop();
        for cg in cgroups {
            assert!(!cg.exists(), "cgroup {} was left behind", cg.display());
        }
        assert!(mounts_under(&dir).is_empty(), "mounts left under {}: {:?}", dir.display(), mounts_under(&dir));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }

    /// Our cgroup in every hierarchy where it exists: the v2 one, and (a safety net: runc sees
    /// only our v2 directory, so there should be none) v1 ones of the same name.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(cg) = &self.cgroup {
            dirs.push(cg.path.clone());
        }
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let d = e.path().join(&self.name);
                if d.is_dir() && !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        dirs
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Shims and containers outlive containerd; all are in our v2 cgroup, whose guard
        // kills what is left and removes it, deepest first. The mount namespace, with its
        // mounts and network namespace files, goes with its last process.
        let v1: Vec<PathBuf> = self.cgroup_dirs().into_iter().filter(|d| Some(d) != self.cgroup.as_ref().map(|c| &c.path)).collect();
        drop(self.cgroup.take());
        for d in v1 {
            remove_v1_tree(&d);
        }
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = Command::new("umount").args(["--lazy", m]).status();
        }
        if self.dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Remove a v1 cgroup directory and those below it, deepest first. Its processes were ours
/// and are already killed (they were in our v2 cgroup too); wait a little for them to go.
fn remove_v1_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_v1_tree(&e.path());
            }
        }
    }
    for _ in 0..400 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    eprintln!("cannot remove cgroup {}", dir.display());
}
