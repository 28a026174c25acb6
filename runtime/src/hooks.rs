//! OCI hooks: programs run at points of the container's life, with its state on stdin.
//!
//! prestart and createRuntime run in the runtime's namespaces once the container's exist;
//! createContainer in the container's namespaces before `pivot_root`; startContainer in the
//! container, after `start`, before the user's program; poststart after it started; poststop
//! after `delete`. A failure in the first four fails the container; in the last two it is
//! only logged, as the spec says.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::{Hook, Hooks};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookPoint {
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Prestart => "prestart",
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        }
    }

    pub fn hooks(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            HookPoint::Prestart => hooks.prestart(),
            HookPoint::CreateRuntime => hooks.create_runtime(),
            HookPoint::CreateContainer => hooks.create_container(),
            HookPoint::StartContainer => hooks.start_container(),
            HookPoint::Poststart => hooks.poststart(),
            HookPoint::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{point} hook {path}: cannot run it: {source}")]
    Spawn { point: &'static str, path: String, source: std::io::Error },
    #[error("{point} hook {path} did not finish within {seconds} s and was killed")]
    Timeout { point: &'static str, path: String, seconds: i64 },
    #[error("{point} hook {path} failed ({status}){output}")]
    Failed { point: &'static str, path: String, status: String, output: String },
}

/// Run every hook of `point`, in order, stopping at the first failure.
pub fn run(point: HookPoint, hooks: Option<&Hooks>, state_json: &str) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for hook in point.hooks(hooks) {
        run_one(point, hook, state_json)?;
    }
    Ok(())
}

/// Run every hook of `point`, in order, even past failures, and return the failures: for
/// poststart and poststop, whose failures the runtime spec wants logged while "the remaining
/// hooks and lifecycle continue as if the hook had succeeded".
pub fn run_all(point: HookPoint, hooks: Option<&Hooks>, state_json: &str) -> Vec<HookError> {
    let Some(hooks) = hooks else { return Vec::new() };
    point.hooks(hooks).iter().filter_map(|hook| run_one(point, hook, state_json).err()).collect()
}

fn memfd(name: &str) -> std::io::Result<File> {
    let name = std::ffi::CString::new(name).expect("no NUL in a constant name");
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn run_one(point: HookPoint, hook: &Hook, state_json: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |source| HookError::Spawn { point: point.name(), path: path.clone(), source };
    let args = hook.args().clone().unwrap_or_default();
    // Output goes to an in-memory file, not a pipe: a hook that leaves a daemon holding a pipe
    // open must not hang the runtime.
    let output = memfd("runtime-rs-hook-output").map_err(spawn_err)?;
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .envs(hook.env().iter().flatten().filter_map(|kv| kv.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(output.try_clone().map_err(spawn_err)?))
        .stderr(Stdio::from(output.try_clone().map_err(spawn_err)?));
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not an error.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    let status = match timeout {
        Some(seconds) => match wait_with_timeout(&mut child, Duration::from_secs(seconds as u64)) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { point: point.name(), path, seconds });
            }
            Err(e) => return Err(spawn_err(e)),
        },
        None => child.wait().map_err(spawn_err)?,
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut output = output;
    let _ = output.rewind();
    let _ = Read::by_ref(&mut output).take(4096).read_to_string(&mut text);
    let text = text.trim();
    Err(HookError::Failed {
        point: point.name(),
        path,
        status: status.to_string(),
        output: if text.is_empty() { String::new() } else { format!(": {text}") },
    })
}

/// Wait for `child` at most `timeout`, on a pidfd (no polling loop, no signal handler).
fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return if n == 0 { Ok(None) } else { child.wait().map(Some) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(json: &str) -> Hooks {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin_args_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hooks(&format!(
            r#"{{"createRuntime":[{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo \"$0 $FOO\" >> {0}","argv0"],"env":["FOO=bar"]}}]}}"#,
            out.display()
        ));
        run(HookPoint::CreateRuntime, Some(&h), r#"{"id":"c1"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c1\"}argv0 bar\n");
        // Other points run nothing.
        run(HookPoint::Poststop, Some(&h), "{}").unwrap();
    }

    #[test]
    fn failure_names_the_hook_and_shows_its_output() {
        let h = hooks(r#"{"prestart":[{"path":"/bin/sh","args":["sh","-c","echo broken network >&2; exit 3"]}]}"#);
        let err = run(HookPoint::Prestart, Some(&h), "{}").unwrap_err().to_string();
        assert!(err.starts_with("prestart hook /bin/sh failed (exit status: 3): broken network"), "{err}");
    }

    #[test]
    fn run_all_goes_on_past_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let h = hooks(&format!(
            r#"{{"poststop":[{{"path":"/bin/sh","args":["sh","-c","exit 1"]}},{{"path":"/bin/sh","args":["sh","-c","touch {0}/second"]}}]}}"#,
            dir.path().display()
        ));
        let errors = run_all(HookPoint::Poststop, Some(&h), "{}");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("exit status: 1"), "{}", errors[0]);
        assert!(dir.path().join("second").exists(), "the hook after the failing one ran");
        // run, by contrast, stops at the first failure.
        std::fs::remove_file(dir.path().join("second")).unwrap();
        assert!(run(HookPoint::Poststop, Some(&h), "{}").is_err());
        assert!(!dir.path().join("second").exists());
    }

    #[test]
    fn timeout_kills_the_hook() {
        let h = hooks(r#"{"poststart":[{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}]}"#);
        let err = run(HookPoint::Poststart, Some(&h), "{}").unwrap_err();
        assert!(matches!(err, HookError::Timeout { seconds: 1, .. }), "{err}");
    }

    #[test]
    fn missing_hook_binary_is_a_spawn_error() {
        let h = hooks(r#"{"poststop":[{"path":"/nonexistent/hook"}]}"#);
        let err = run(HookPoint::Poststop, Some(&h), "{}").unwrap_err().to_string();
        assert!(err.starts_with("poststop hook /nonexistent/hook: cannot run it"), "{err}");
    }
}
