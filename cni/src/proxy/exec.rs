//! Running a tool (`nft`, `conntrack`), optionally inside a named network namespace through
//! `ip netns exec` (tools act on the caller's namespace; tests and benchmarks use their own).
//! Shared by both backends and the conntrack cleaner.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::proxy::ProxyError;

/// Runs `program args` (in `netns` when given), feeding `stdin` when given. Returns the
/// output whatever the exit status (callers judge it); errs only when it cannot run.
pub(crate) fn run(backend: &'static str, netns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, ProxyError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let spawn_err = |source| ProxyError::Spawn { backend, program: program.to_string(), source };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let Some(text) = stdin else { return child.wait_with_output().map_err(spawn_err) };
    // Written from a thread while we read: a large input would otherwise block on a tool that
    // writes before it has read everything. A tool that fails early closes its stdin; its
    // stderr says why, so the write error is ignored.
    let mut pipe = child.stdin.take().expect("piped stdin");
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
        child.wait_with_output()
    })
    .map_err(spawn_err)
}
