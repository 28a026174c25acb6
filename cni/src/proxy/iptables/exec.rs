//! Running `iptables`, `iptables-save`, `iptables-restore` and `sysctl`, optionally inside a
//! named network namespace (`ip netns exec`), behind a trait so the sync logic is tested
//! without root against a recording double.

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
        let out = crate::proxy::exec::run(BACKEND, self.netns.as_deref(), program, args, stdin)?;
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
