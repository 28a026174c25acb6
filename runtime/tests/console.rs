//! Terminals: the pty master handed to a `--console-socket` listener (as containerd's shim
//! receives it), the foreground relay of `run`, and the refusals when nobody could take the
//! terminal. Root-only: run through scripts/test as root.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use test_support::{read_until, recv_fd, require_root, text, wait_or_kill, Bundle, CgroupParent, Runtime, HANG};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");
const WAIT: Duration = Duration::from_secs(20);

/// A `--console-socket` listener in a directory of its own.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("krs-test-console-").tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        ConsoleSocket { _dir: dir, path, listener }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Accept the runtime's connection and take the terminal's master from it.
    fn receive_master(&self) -> OwnedFd {
        self.listener.set_nonblocking(true).unwrap();
        let start = std::time::Instant::now();
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("no connection on the console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        recv_fd(stream.as_fd()).expect("the runtime sends the pty master with SCM_RIGHTS")
    }
}

fn write_fd(fd: &OwnedFd, data: &str) {
    let mut f = std::fs::File::from(fd.try_clone().unwrap());
    f.write_all(data.as_bytes()).unwrap();
}

fn terminal_bundle(args: &[&str], cgroups_path: &str) -> Bundle {
    let mut b = Bundle::busybox(args, cgroups_path);
    b.config["process"]["terminal"] = json!(true);
    b.write();
    b
}

#[test]
#[ignore = "needs root"]
fn create_hands_the_terminal_to_the_console_socket() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let sock = ConsoleSocket::new();
    let mut b = terminal_bundle(&["sh"], &cg.child("tty"));
    b.config["process"]["consoleSize"] = json!({"height": 40, "width": 120});
    b.write();
    rt.ok(&["create", "--console-socket", sock.path(), "--bundle", b.path().to_str().unwrap(), "tty"]);
    let master = sock.receive_master();
    rt.ok(&["start", "tty"]);
    // Each answer is tagged, so the terminal's echo of the command line cannot match it.
    write_fd(
        &master,
        "echo T=$(tty); [ -t 0 ] && [ -t 1 ] && echo STDIO=$((1+1)); echo C=$(stat -c %t /dev/console); \
         echo S=$(stty size); [ -t 0 ] < /dev/console && echo CONSOLE=$((2+2)); echo DONE=$((40+2))\n",
    );
    let out = read_until(master.as_fd(), "DONE=42", WAIT);
    assert!(out.contains("T=/dev/pts/0") || out.contains("T=/dev/console"), "{out}");
    assert!(out.contains("STDIO=2"), "stdin and stdout are the terminal: {out}");
    // /dev/console is the pty slave (devpts, major 136 = 0x88), a terminal.
    assert!(out.contains("C=88"), "{out}");
    assert!(out.contains("CONSOLE=4"), "{out}");
    assert!(out.contains("S=40 120"), "consoleSize is applied: {out}");
    write_fd(&master, "exit 0\n");
    rt.wait_status("tty", "stopped");
    rt.ok(&["delete", "tty"]);
}

#[test]
#[ignore = "needs root"]
fn run_in_the_foreground_relays_its_own_terminal() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = terminal_bundle(&["sh"], &cg.child("fgtty"));
    // stdin and stdout are pipes: the runtime holds the pty master and copies both ways.
    let mut child = rt
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), "fgtty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"echo HI=$((1+1)); [ -t 0 ] && [ -t 1 ] && echo TTY=$((3+4)); exit 3\n").unwrap();
    drop(stdin);
    let status = wait_or_kill(&mut child, HANG, &["run", "fgtty"]);
    let out = text(&reader.join().unwrap());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(3), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("HI=2"), "{out}");
    assert!(out.contains("TTY=7"), "the program's stdio is a terminal: {out}");
    assert!(rt.fails(&["state", "fgtty"]).contains("does not exist"));
}

#[test]
#[ignore = "needs root"]
fn detached_terminal_without_console_socket_is_refused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = terminal_bundle(&["sh"], &cg.child("nosock"));
    for args in [&["create"][..], &["run", "-d"][..]] {
        let mut full = args.to_vec();
        full.extend(["--bundle", b.path().to_str().unwrap(), "nosock"]);
        let out = rt.run(&full);
        assert_eq!(out.status.code(), Some(1), "{full:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot allocate tty if runtime-rs will detach without setting console socket"), "{err}");
        rt.assert_gone("nosock", &cg);
    }
}

#[test]
#[ignore = "needs root"]
fn console_socket_without_terminal_is_refused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let sock = ConsoleSocket::new();
    let b = Bundle::busybox(&["true"], &cg.child("notty"));
    let err = rt.fails(&["create", "--console-socket", sock.path(), "--bundle", b.path().to_str().unwrap(), "notty"]);
    assert!(err.contains("cannot use console socket if runtime-rs will not detach or allocate tty"), "{err}");
    rt.assert_gone("notty", &cg);
}

#[test]
#[ignore = "needs root"]
fn exec_with_a_terminal_goes_to_the_console_socket() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child("exectty"));
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "exectty"]);

    // -t -d without a console socket: nobody could take the terminal.
    let before = std::fs::read_to_string(cg.path.join("exectty/cgroup.procs")).unwrap();
    let err = rt.fails(&["exec", "-t", "-d", "exectty", "sh"]);
    assert!(err.contains("cannot allocate tty if runtime-rs will detach without setting console socket"), "{err}");
    assert_eq!(std::fs::read_to_string(cg.path.join("exectty/cgroup.procs")).unwrap(), before, "no process was started");

    let sock = ConsoleSocket::new();
    rt.ok(&["exec", "-t", "-d", "--console-socket", sock.path(), "exectty", "sh"]);
    let master = sock.receive_master();
    write_fd(&master, "[ -t 0 ] && echo EXECTTY=$((5+5)); echo PID1=$(cat /proc/1/comm)\n");
    let out = read_until(master.as_fd(), "PID1=sleep", WAIT);
    assert!(out.contains("EXECTTY=10"), "{out}");
    write_fd(&master, "exit\n");
    rt.ok(&["delete", "--force", "exectty"]);
}
