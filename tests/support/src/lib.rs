//! Helpers for root-only integration tests.
//!
//! Each test gets its own busybox bundle (copied from a rootfs built once from Debian's
//! busybox-static), its own state root, and its own cgroup parent named `krs-test-*`;
//! dropping them removes containers, cgroups and files even when the test failed.
//!
//! Root-only tests are marked `#[ignore = "needs root"]`, so a plain `cargo test` lists them
//! as ignored (visibly) and `scripts/test` runs them when it is root.
//!
//! For the image tests: [`registry::Registry`], a real registry on loopback seeded with the
//! images of scripts/build-test-images.sh ([`test_images`]); these need no root.
//!
//! For the CNI tests: [`containerd::Containerd`], a private containerd with its CRI plugin.

pub mod cluster;
pub mod containerd;
pub mod cri_service;
pub mod bins;
pub mod cutting_proxy;
pub mod http;
pub mod kubectl;
pub mod multinode;
pub mod netns;
pub mod registry;
pub mod relay;
pub mod test_images;
pub mod token_issuer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

/// Panic with a clear message unless we are root.
pub fn require_root() {
    assert!(unsafe { libc::geteuid() } == 0, "this test needs root: run it through scripts/test as root");
}

/// The directory of this binary's build profile (`target/debug`): test binaries live in
/// `target/<profile>/deps`, benchmark drivers in `target/<profile>` itself.
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("binary in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target/<profile>").to_path_buf() } else { dir.to_path_buf() }
}

/// A busybox root filesystem, built once per build directory.
pub fn busybox_rootfs() -> PathBuf {
    let dir = profile_dir().join("krs-busybox-rootfs");
    let done = dir.join(".complete");
    if done.exists() {
        return dir;
    }
    let lock = profile_dir().join("krs-busybox-rootfs.lock");
    let f = fs::File::create(&lock).expect("create rootfs lock");
    use std::os::fd::AsRawFd;
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if !done.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-rootfs.sh");
        let st = Command::new("sh").arg(&script).arg(&dir).status().expect("run build-busybox-rootfs.sh");
        assert!(st.success(), "{} failed", script.display());
        fs::write(&done, "").unwrap();
    }
    dir
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name with our prefix, for cgroups, namespaces and containers.
pub fn unique(kind: &str) -> String {
    format!("krs-test-{kind}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// The cgroup v2 hierarchy of this machine.
pub fn cgroup2_root() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(p).join("cgroup.procs").exists() && Path::new(p).join("cgroup.subtree_control").exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no cgroup v2 hierarchy found");
}

/// A cgroup of the test's own under the v2 root; containers go below it. Removed on drop.
pub struct CgroupParent {
    pub name: String,
    pub path: PathBuf,
}

impl CgroupParent {
    pub fn new() -> Self {
        let name = unique("cg");
        let path = cgroup2_root().join(&name);
        fs::create_dir(&path).expect("create test cgroup");
        CgroupParent { name, path }
    }

    /// Pass every controller this cgroup has on to its children (it is the test's own
    /// cgroup, so the test may); returns them. On a host whose v2 root enables none for its
    /// children, like the hybrid development machines, that is none.
    pub fn enable_controllers(&self) -> Vec<String> {
        let offered = fs::read_to_string(self.path.join("cgroup.controllers")).expect("read cgroup.controllers");
        let mut enabled = Vec::new();
        for c in offered.split_whitespace() {
            if fs::write(self.path.join("cgroup.subtree_control"), format!("+{c}")).is_ok() {
                enabled.push(c.to_string());
            }
        }
        enabled
    }

    /// Whether containers below this parent get `controller`.
    pub fn offers(&self, controller: &str) -> bool {
        fs::read_to_string(self.path.join("cgroup.subtree_control")).unwrap_or_default().split_whitespace().any(|c| c == controller)
    }

    /// The `linux.cgroupsPath` for a container below this parent.
    pub fn child(&self, id: &str) -> String {
        format!("/{}/{id}", self.name)
    }
}

impl Default for CgroupParent {
    fn default() -> Self {
        Self::new()
    }
}

fn remove_cgroup_tree(dir: &Path) {
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..400 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.path);
    }
}

/// A bundle: a busybox rootfs copy and a config.json, in a temporary directory.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle running `args`, without terminal, with the default namespaces, mounts,
    /// masked and read-only paths runc's `spec` gives, and its cgroup under `cgroups_path`.
    pub fn busybox(args: &[&str], cgroups_path: &str) -> Bundle {
        let dir = tempfile::Builder::new().prefix("krs-test-bundle-").tempdir().expect("bundle dir");
        let rootfs = dir.path().join("rootfs");
        let st = Command::new("cp").arg("-a").arg(busybox_rootfs()).arg(&rootfs).status().expect("cp rootfs");
        assert!(st.success());
        let _ = fs::remove_file(rootfs.join(".complete"));
        let config = default_config(args, cgroups_path);
        let b = Bundle { dir, config };
        b.write();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Write `config` as config.json (call after changing it).
    pub fn write(&self) {
        fs::write(self.dir.path().join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).expect("write config.json");
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
        self.write();
    }
}

/// runc's default spec, without a terminal, running `args`.
pub fn default_config(args: &[&str], cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "krs-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A runtime binary with a state root of the test's own. Dropping it force-deletes every
/// container left in the root, then removes the root.
pub struct Runtime {
    pub bin: PathBuf,
    pub root: tempfile::TempDir,
}

impl Runtime {
    pub fn new(bin: impl Into<PathBuf>) -> Runtime {
        let root = tempfile::Builder::new().prefix("krs-test-root-").tempdir().expect("state root");
        Runtime { bin: bin.into(), root }
    }

    /// A command for `runtime-rs --root <ours> <args...>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run to completion. Output goes through files, not pipes: a container's init inherits
    /// the runtime's stdio (as with runc), so a pipe would not close until the container exits.
    pub fn run(&self, args: &[&str]) -> Output {
        run_captured(self.cmd(args), args)
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed ({}):\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should have failed:\nstdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
        text(&out.stderr)
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or_default().to_string()
    }

    /// Wait until the container's status is `want`.
    pub fn wait_status(&self, id: &str, want: &str) {
        for _ in 0..500 {
            if self.status(id) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("container {id} never became {want}; it is {}", self.status(id));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().to_string();
                let _ = self.cmd(&["delete", "--force", &id]).output();
            }
        }
    }
}

/// How long any single command of a test may take before it counts as hung.
pub const HANG: Duration = Duration::from_secs(120);

/// Run `cmd` with stdout and stderr captured in files; kill it and fail the test if it hangs.
pub fn run_captured(mut cmd: Command, what: &[&str]) -> Output {
    let mut out = tempfile::tempfile().expect("stdout file");
    let mut err = tempfile::tempfile().expect("stderr file");
    cmd.stdout(out.try_clone().unwrap()).stderr(err.try_clone().unwrap());
    let mut child = cmd.spawn().expect("spawn");
    let status = wait_or_kill(&mut child, HANG, what);
    use std::io::{Read, Seek};
    let (mut o, mut e) = (Vec::new(), Vec::new());
    out.rewind().unwrap();
    out.read_to_end(&mut o).unwrap();
    err.rewind().unwrap();
    err.read_to_end(&mut e).unwrap();
    Output { status, stdout: o, stderr: e }
}

/// Wait for `child`; past `limit` kill it and panic (a hang is a failure, never a wait).
pub fn wait_or_kill(child: &mut std::process::Child, limit: Duration, what: &[&str]) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what:?} hung for {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Mount points (from /proc/self/mountinfo) under `prefix`: what a test must not leave behind.
pub fn mounts_under(prefix: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// A namespace of a process as `readlink /proc/<pid>/ns/<kind>` names it (`net:[4026531840]`);
/// `pid` may be `"self"`.
pub fn ns_of(pid: impl std::fmt::Display, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

impl Runtime {
    /// `run` the bundle in the foreground; the container's output is the returned stdout.
    pub fn run_bundle(&self, b: &Bundle, id: &str) -> Output {
        self.run(&["run", "--bundle", b.path().to_str().unwrap(), id])
    }

    /// `run` the bundle in the foreground and require exit status 0; returns stdout.
    pub fn run_ok(&self, b: &Bundle, id: &str) -> String {
        self.ok(&["run", "--bundle", b.path().to_str().unwrap(), id])
    }

    /// `create` then `start`; returns the init's pid as the host sees it.
    pub fn create_and_start(&self, b: &Bundle, id: &str) -> i32 {
        self.ok(&["create", "--bundle", b.path().to_str().unwrap(), id]);
        self.ok(&["start", id]);
        self.state(id)["pid"].as_i64().expect("a running container has a pid") as i32
    }

    /// Require that nothing of container `id` is left: no state directory, no cgroup below
    /// `cg`, and `state` says it does not exist.
    pub fn assert_gone(&self, id: &str, cg: &CgroupParent) {
        assert!(!self.root.path().join(id).exists(), "state directory of {id} was left behind");
        assert!(!cg.path.join(id).exists(), "cgroup of {id} was left behind");
        let err = self.fails(&["state", id]);
        assert!(err.contains("does not exist"), "{err}");
    }
}

/// Receive one file descriptor sent with SCM_RIGHTS on a connected unix socket (what a
/// `--console-socket` listener does with the terminal's master). Written against libc here,
/// independently of the runtime's own code, so a bug there cannot hide itself.
pub fn recv_fd(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("no control message: no descriptor was sent"));
    }
    let (level, typ) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
    if level != libc::SOL_SOCKET || typ != libc::SCM_RIGHTS {
        return Err(io::Error::other(format!("unexpected control message {level}/{typ}")));
    }
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int) };
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Read from `fd` until `needle` appears in what was read, or `limit` passes; returns all
/// that was read. For terminals and pipes whose writer does not close.
pub fn read_until(fd: std::os::fd::BorrowedFd<'_>, needle: &str, limit: Duration) -> String {
    use std::os::fd::AsRawFd;
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    while !text(&got).contains(needle) {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            panic!("{needle:?} did not appear within {limit:?}; got {:?}", text(&got));
        }
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            panic!("end of input before {needle:?} appeared; got {:?}", text(&got));
        }
        got.extend_from_slice(&buf[..r as usize]);
    }
    text(&got)
}

/// Shift the owner of every file under `root` by `by` (uid and gid), as an image prepared for
/// a user namespace mapping container id 0 to host id `by` is.
pub fn shift_ownership(root: &Path, by: u32) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(root).unwrap();
    std::os::unix::fs::lchown(root, Some(md.uid() + by), Some(md.gid() + by)).unwrap();
    if md.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            shift_ownership(&e.unwrap().path(), by);
        }
    }
}

/// SIGTERM `child` and wait for it, then SIGKILL after `grace`.
pub fn terminate(child: &mut std::process::Child, grace: std::time::Duration) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// A child process killed (SIGKILL, by its PID) and reaped when this drops.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
