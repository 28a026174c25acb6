//! The OCI runtime, driven through runc's command line (`<binary> --root <root> <verb>
//! ...`), which runtime-rs, runc and crun share. Creating is left to the container's
//! monitor process, which runs the runtime itself with [`OciCli::create_args`]; everything
//! after that goes through [`OciRuntime`].
//!
//! Errors carry the verb, the container id and the runtime's stderr. What a reconcile loop
//! repeats is idempotent: deleting a container that does not exist, and killing one that
//! has stopped, succeed.
//!
//! The calls block (they wait for the runtime to exit, at most [`OciCli::timeout`]); async
//! callers run them on a blocking thread.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{binary}: {verb} {id}: cannot run the OCI runtime: {source}")]
    Spawn { binary: PathBuf, verb: &'static str, id: String, source: std::io::Error },
    #[error("{verb} {id}: container does not exist: {stderr}")]
    NotFound { verb: &'static str, id: String, stderr: String },
    #[error("{verb} {id}: container is not running: {stderr}")]
    NotRunning { verb: &'static str, id: String, stderr: String },
    #[error("{verb} {id}: the OCI runtime failed ({status}): {stderr}")]
    Failed { verb: &'static str, id: String, status: String, stderr: String },
    #[error("{verb} {id}: the OCI runtime did not finish within {timeout:?}; it was killed")]
    TimedOut { verb: &'static str, id: String, timeout: Duration },
    #[error("{verb} {id}: unexpected output from the OCI runtime: {message}")]
    Output { verb: &'static str, id: String, message: String },
}

/// A container's status as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciStatus {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciState {
    pub id: String,
    pub status: OciStatus,
    /// The init process as the host sees it; `None` once stopped (runc reports 0).
    pub pid: Option<i32>,
    pub bundle: Option<PathBuf>,
}

/// How `exec` runs the process described by a process.json. Whether it gets a terminal
/// is the file's `terminal`; then `console_socket` receives the terminal's master.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Return once the process started, instead of when it exits.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Give up (and kill the runtime) after this long; default [`OciCli::timeout`].
    pub timeout: Option<Duration>,
}

/// What a non-detached exec returns: the process's exit code and output. The runtime's
/// own errors come out on the same stderr, with a non-zero code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub trait OciRuntime: Send + Sync {
    fn start(&self, id: &str) -> Result<(), OciError>;
    fn state(&self, id: &str) -> Result<OciState, OciError>;
    /// Signal the init (`all`: every process of the container). A stopped container is
    /// not an error.
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError>;
    /// Remove the container (`force`: kill it first). A missing container is not an error.
    fn delete(&self, id: &str, force: bool) -> Result<(), OciError>;
    /// Run the process of `process_json` in the container.
    fn exec(&self, id: &str, process_json: &Path, opts: &ExecOptions) -> Result<ExecOutput, OciError>;
    /// Apply a `linux.resources` JSON file.
    fn update(&self, id: &str, resources_json: &Path) -> Result<(), OciError>;
    fn pause(&self, id: &str) -> Result<(), OciError>;
    fn resume(&self, id: &str) -> Result<(), OciError>;
}

/// An OCI runtime binary with runc's command line, and its state root.
#[derive(Debug, Clone)]
pub struct OciCli {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// How long a command may take before it counts as hung.
    pub timeout: Duration,
}

/// The runtime's output and exit status.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl OciCli {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> OciCli {
        OciCli { binary: binary.into(), root: root.into(), timeout: Duration::from_secs(60) }
    }

    fn args(&self, verb: &str, rest: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--root".into(), self.root.clone().into(), verb.into()];
        a.extend(rest);
        a
    }

    /// The arguments (after the binary) of `create`, as the monitor runs it.
    pub fn create_args(&self, id: &str, bundle: &Path, pid_file: &Path, console_socket: Option<&Path>) -> Vec<OsString> {
        let mut rest: Vec<OsString> = vec!["--bundle".into(), bundle.into(), "--pid-file".into(), pid_file.into()];
        if let Some(s) = console_socket {
            rest.extend(["--console-socket".into(), s.into()]);
        }
        rest.push(id.into());
        self.args("create", rest)
    }

    pub fn kill_args(&self, id: &str, signal: i32, all: bool) -> Vec<OsString> {
        let mut rest: Vec<OsString> = Vec::new();
        if all {
            rest.push("--all".into());
        }
        rest.extend([id.into(), signal.to_string().into()]);
        self.args("kill", rest)
    }

    pub fn delete_args(&self, id: &str, force: bool) -> Vec<OsString> {
        let mut rest: Vec<OsString> = Vec::new();
        if force {
            rest.push("--force".into());
        }
        rest.push(id.into());
        self.args("delete", rest)
    }

    pub fn exec_args(&self, id: &str, process_json: &Path, opts: &ExecOptions) -> Vec<OsString> {
        let mut rest: Vec<OsString> = vec!["--process".into(), process_json.into()];
        if opts.detach {
            rest.push("--detach".into());
        }
        if let Some(p) = &opts.pid_file {
            rest.extend(["--pid-file".into(), p.into()]);
        }
        if let Some(s) = &opts.console_socket {
            rest.extend(["--console-socket".into(), s.into()]);
        }
        rest.push(id.into());
        self.args("exec", rest)
    }

    pub fn update_args(&self, id: &str, resources_json: &Path) -> Vec<OsString> {
        self.args("update", ["--resources".into(), resources_json.into(), id.into()])
    }

    /// Run the runtime with `args`; output goes through files, not pipes, because the
    /// processes it starts inherit its stdio and could hold a pipe open.
    fn run(&self, verb: &'static str, id: &str, args: Vec<OsString>, timeout: Duration) -> Result<Ran, OciError> {
        let spawn_err = |source| OciError::Spawn { binary: self.binary.clone(), verb, id: id.into(), source };
        let mut out = tempfile::tempfile().map_err(spawn_err)?;
        let mut err = tempfile::tempfile().map_err(spawn_err)?;
        let mut child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(spawn_err)?)
            .stderr(err.try_clone().map_err(spawn_err)?)
            .spawn()
            .map_err(spawn_err)?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait().map_err(spawn_err)? {
                Some(st) => break st,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(OciError::TimedOut { verb, id: id.into(), timeout });
                }
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        };
        Ok(Ran { status, stdout: read_all(&mut out), stderr: read_all(&mut err) })
    }

    /// Run and require success, mapping the runtime's complaints.
    fn run_ok(&self, verb: &'static str, id: &str, args: Vec<OsString>) -> Result<Ran, OciError> {
        let ran = self.run(verb, id, args, self.timeout)?;
        if ran.status.success() {
            Ok(ran)
        } else {
            Err(classify(verb, id, ran.status, &ran.stderr))
        }
    }
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = f.rewind().and_then(|_| f.read_to_end(&mut v));
    v
}

/// Map a failed command to an error by what runc (and runtime-rs, which speaks the same)
/// and crun say on stderr.
pub(crate) fn classify(verb: &'static str, id: &str, status: ExitStatus, stderr: &[u8]) -> OciError {
    let text = String::from_utf8_lossy(stderr).trim().to_string();
    let lower = text.to_lowercase();
    if lower.contains("does not exist") || lower.contains("no such container") || lower.contains("container not found") {
        OciError::NotFound { verb, id: id.into(), stderr: text }
    } else if lower.contains("not running") || lower.contains("is stopped") || lower.contains("already stopped") {
        OciError::NotRunning { verb, id: id.into(), stderr: text }
    } else {
        OciError::Failed { verb, id: id.into(), status: status.to_string(), stderr: text }
    }
}

/// Parse `state`'s JSON.
pub(crate) fn parse_state(id: &str, json: &[u8]) -> Result<OciState, OciError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        id: String,
        status: String,
        #[serde(default)]
        pid: i32,
        #[serde(default)]
        bundle: Option<PathBuf>,
    }
    let bad = |message: String| OciError::Output { verb: "state", id: id.into(), message };
    let raw: Raw = serde_json::from_slice(json).map_err(|e| bad(format!("state is not JSON: {e}")))?;
    let status = match raw.status.as_str() {
        "creating" => OciStatus::Creating,
        "created" => OciStatus::Created,
        "running" => OciStatus::Running,
        "paused" => OciStatus::Paused,
        "stopped" => OciStatus::Stopped,
        other => return Err(bad(format!("unknown status {other:?}"))),
    };
    let pid = (raw.pid > 0 && status != OciStatus::Stopped).then_some(raw.pid);
    Ok(OciState { id: raw.id, status, pid, bundle: raw.bundle })
}

impl OciRuntime for OciCli {
    fn start(&self, id: &str) -> Result<(), OciError> {
        self.run_ok("start", id, self.args("start", [id.into()])).map(drop)
    }

    fn state(&self, id: &str) -> Result<OciState, OciError> {
        let ran = self.run_ok("state", id, self.args("state", [id.into()]))?;
        parse_state(id, &ran.stdout)
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        match self.run_ok("kill", id, self.kill_args(id, signal, all)) {
            Ok(_) | Err(OciError::NotRunning { .. }) => Ok(()),
            // Stopped between our call and the runtime's check, in words we do not know.
            Err(e @ OciError::Failed { .. }) => match self.state(id) {
                Ok(s) if s.status == OciStatus::Stopped => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        match self.run_ok("delete", id, self.delete_args(id, force)) {
            Ok(_) | Err(OciError::NotFound { .. }) => Ok(()),
            Err(e @ OciError::Failed { .. }) => match self.state(id) {
                Err(OciError::NotFound { .. }) => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn exec(&self, id: &str, process_json: &Path, opts: &ExecOptions) -> Result<ExecOutput, OciError> {
        let ran = self.run("exec", id, self.exec_args(id, process_json, opts), opts.timeout.unwrap_or(self.timeout))?;
        if opts.detach && !ran.status.success() {
            return Err(classify("exec", id, ran.status, &ran.stderr));
        }
        use std::os::unix::process::ExitStatusExt;
        let exit_code = ran.status.code().unwrap_or_else(|| 128 + ran.status.signal().unwrap_or(0));
        Ok(ExecOutput { exit_code, stdout: ran.stdout, stderr: ran.stderr })
    }

    fn update(&self, id: &str, resources_json: &Path) -> Result<(), OciError> {
        self.run_ok("update", id, self.update_args(id, resources_json)).map(drop)
    }

    fn pause(&self, id: &str) -> Result<(), OciError> {
        self.run_ok("pause", id, self.args("pause", [id.into()])).map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), OciError> {
        self.run_ok("resume", id, self.args("resume", [id.into()])).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn cli() -> OciCli {
        OciCli::new("/usr/bin/runc", "/run/krs/oci")
    }

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn arguments_follow_runc() {
        let c = cli();
        assert_eq!(
            strs(c.create_args("c1", Path::new("/b"), Path::new("/b/pid"), None)),
            ["--root", "/run/krs/oci", "create", "--bundle", "/b", "--pid-file", "/b/pid", "c1"]
        );
        assert_eq!(
            strs(c.create_args("c1", Path::new("/b"), Path::new("/b/pid"), Some(Path::new("/s.sock"))))[7..],
            ["--console-socket", "/s.sock", "c1"]
        );
        assert_eq!(strs(c.kill_args("c1", 9, true)), ["--root", "/run/krs/oci", "kill", "--all", "c1", "9"]);
        assert_eq!(strs(c.kill_args("c1", 15, false))[2..], ["kill", "c1", "15"]);
        assert_eq!(strs(c.delete_args("c1", true))[2..], ["delete", "--force", "c1"]);
        assert_eq!(strs(c.delete_args("c1", false))[2..], ["delete", "c1"]);
        let opts = ExecOptions { detach: true, pid_file: Some("/p".into()), ..Default::default() };
        assert_eq!(strs(c.exec_args("c1", Path::new("/proc.json"), &opts))[2..], ["exec", "--process", "/proc.json", "--detach", "--pid-file", "/p", "c1"]);
        assert_eq!(strs(c.update_args("c1", Path::new("/r.json")))[2..], ["update", "--resources", "/r.json", "c1"]);
    }

    #[test]
    fn errors_are_mapped_from_what_runtimes_say() {
        let st = ExitStatus::from_raw(1 << 8);
        let runc_missing = br#"time="2026-12-02T10:00:00Z" level=error msg="container does not exist""#;
        assert!(matches!(classify("delete", "c1", st, runc_missing), OciError::NotFound { .. }));
        let runc_stopped = br#"time="2026-12-02T10:00:00Z" level=error msg="container not running""#;
        assert!(matches!(classify("kill", "c1", st, runc_stopped), OciError::NotRunning { .. }));
        let other = classify("start", "c1", st, b"cannot start a container that has stopped\n");
        let text = other.to_string();
        assert!(matches!(other, OciError::Failed { .. }), "{text}");
        assert!(text.contains("start c1") && text.contains("cannot start a container that has stopped") && text.contains("exit status: 1"), "{text}");
    }

    #[test]
    fn state_json_is_parsed() {
        let s = parse_state("c1", br#"{"ociVersion":"1.0.2","id":"c1","status":"running","pid":42,"bundle":"/b","rootfs":"/b/rootfs"}"#).unwrap();
        assert_eq!(s, OciState { id: "c1".into(), status: OciStatus::Running, pid: Some(42), bundle: Some("/b".into()) });
        let s = parse_state("c1", br#"{"id":"c1","status":"stopped","pid":0}"#).unwrap();
        assert_eq!((s.status, s.pid), (OciStatus::Stopped, None));
        assert!(matches!(parse_state("c1", br#"{"id":"c1","status":"weird"}"#), Err(OciError::Output { .. })));
        assert!(matches!(parse_state("c1", b"not json"), Err(OciError::Output { .. })));
    }

    #[test]
    fn a_missing_binary_names_the_verb_and_id() {
        let c = OciCli::new("/nonexistent/krs-runtime", "/tmp");
        let e = c.start("c9").unwrap_err();
        assert!(matches!(e, OciError::Spawn { .. }) && e.to_string().contains("start c9"), "{e}");
    }

    /// A stand-in runtime: a shell script that answers as runc does.
    fn fake_runtime(dir: &Path, script: &str) -> OciCli {
        let bin = dir.join("fake-runtime");
        // Written by another process: a file this process had open for writing could be
        // inherited, for an instant, by a child another test thread forks, and running it
        // would then fail with ETXTBSY ("text file busy").
        let mut writer = std::process::Command::new("sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&bin)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut writer.stdin.take().unwrap(), format!("#!/bin/sh\n{script}\n").as_bytes()).unwrap();
        assert!(writer.wait().unwrap().success());
        OciCli::new(bin, dir)
    }

    #[test]
    fn delete_and_kill_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let gone = fake_runtime(dir.path(), r#"echo 'level=error msg="container does not exist"' >&2; exit 1"#);
        gone.delete("c1", false).unwrap();
        assert!(matches!(gone.state("c1"), Err(OciError::NotFound { .. })));
        let stopped = fake_runtime(
            dir.path(),
            r#"case "$3" in
                 kill) echo 'cannot signal' >&2; exit 1;;
                 state) echo '{"id":"c1","status":"stopped","pid":0}';;
               esac"#,
        );
        stopped.kill("c1", 15, false).unwrap();
        let running = fake_runtime(
            dir.path(),
            r#"case "$3" in
                 kill) echo 'permission denied' >&2; exit 1;;
                 state) echo '{"id":"c1","status":"running","pid":7}';;
               esac"#,
        );
        let e = running.kill("c1", 15, false).unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{e}");
    }

    #[test]
    fn exec_returns_the_exit_code_and_output_and_hangs_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let c = fake_runtime(dir.path(), r#"echo out; echo err >&2; exit 3"#);
        let out = c.exec("c1", Path::new("/p.json"), &ExecOptions::default()).unwrap();
        assert_eq!(out, ExecOutput { exit_code: 3, stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec() });
        let mut slow = fake_runtime(dir.path(), "exec sleep 10");
        slow.timeout = Duration::from_millis(100);
        assert!(matches!(slow.start("c1"), Err(OciError::TimedOut { .. })));
    }
}
