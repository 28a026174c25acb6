//! Running `iptables`, `iptables-save`, `iptables-restore` and `sysctl`, optionally inside a
//! named network namespace (`ip netns exec`), behind a trait so the sync logic is tested
//! without root against a recording double.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::proxy::ProxyError;

pub(super) const BACKEND: &str = "iptables";

pub trait Exec: Send {
    /// Runs `program args`, feeding `stdin` when given; stdout, or the failure.
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ProxyError>;
}

/// The real tools, in `netns` when set.
pub struct Tools {
    pub netns: Option<String>,
}

impl Exec for Tools {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ProxyError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let spawn_err = |source| ProxyError::Spawn { backend: BACKEND, program: program.to_string(), source };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(text) = stdin {
            // Written from a thread: a tool that fails early stops reading, and a large
            // input would otherwise block us before we read its stderr.
            let mut pipe = child.stdin.take().expect("piped stdin");
            let out = std::thread::scope(|s| {
                s.spawn(move || pipe.write_all(text.as_bytes()));
                child.wait_with_output()
            });
            return finish(program, args, out.map_err(spawn_err)?);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        finish(program, args, out)
    }
}

fn finish(program: &str, args: &[&str], out: std::process::Output) -> Result<String, ProxyError> {
    if !out.status.success() {
        return Err(ProxyError::Command {
            backend: BACKEND,
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
