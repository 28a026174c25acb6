//! Running a packet-filter tool (`nft`, `iptables*`, `conntrack`), optionally inside a named
//! network namespace through `ip netns exec` (the tools act on the caller's namespace; tests
//! and benchmarks use their own). Shared by the plugins' firewall and the service proxy,
//! each of which turns the outcome into its own error.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `program args` (in `netns` when given), feeding `stdin` when given. Returns the output
/// whatever the exit status (callers judge it); errs only when the tool cannot run.
pub(crate) fn run(netns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Output> {
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
    let mut child = cmd.spawn()?;
    let Some(text) = stdin else { return child.wait_with_output() };
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
}
