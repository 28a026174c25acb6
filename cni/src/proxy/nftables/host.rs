//! What the backend asks of the kernel, behind [`Host`] so the sync logic is unit-tested
//! without root: load an `nft -f` script, set a sysctl. [`System`] is the real one.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::proxy::ProxyError;

const NAME: &str = "nftables";
/// Lines of a failed script quoted in its error.
const QUOTED_LINES: usize = 12;

pub trait Host: Send {
    /// Loads `script` with `nft -f -` (one transaction: all or nothing).
    fn nft(&mut self, script: &str) -> Result<(), ProxyError>;
    /// Writes `value` to the sysctl `key` (dotted); `Ok(false)` when there is no such key.
    fn sysctl(&mut self, key: &str, value: &str) -> Result<bool, ProxyError>;
}

/// The real kernel, in the named network namespace when given.
#[derive(Debug, Clone, Default)]
pub struct System {
    pub netns: Option<String>,
}

impl Host for System {
    fn nft(&mut self, script: &str) -> Result<(), ProxyError> {
        let out = crate::proxy::exec::run(NAME, self.netns.as_deref(), "nft", &["-f", "-"], Some(script))?;
        if out.status.success() {
            return Ok(());
        }
        let lines: Vec<&str> = script.lines().collect();
        let mut command = format!("nft -f - ({} lines, first ones:\n{}", lines.len(), lines[..lines.len().min(QUOTED_LINES)].join("\n"));
        command.push_str(if lines.len() > QUOTED_LINES { "\n...)" } else { ")" });
        Err(ProxyError::Command { backend: NAME, command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<bool, ProxyError> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let write = || -> io::Result<bool> {
            if !path.exists() {
                return Ok(false);
            }
            std::fs::write(&path, value).map(|()| true)
        };
        let result = match &self.netns {
            None => write(),
            // A /proc/sys/net file is the one of its opener's namespace: open it from a
            // thread that entered the namespace (setns is per thread).
            Some(ns) => File::open(format!("/run/netns/{ns}")).and_then(|f| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                        write()
                    })
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            }),
        };
        let place = self.netns.as_deref().map(|ns| format!(" in netns {ns}")).unwrap_or_default();
        result.map_err(|e| ProxyError::Setup(format!("cannot set sysctl {key}={value}{place}: {e}")))
    }
}

/// A [`Host`] that records scripts and sysctls, failing the next `nft` call on request.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    pub state: std::sync::Arc<std::sync::Mutex<Recorded>>,
}

#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub scripts: Vec<String>,
    pub sysctls: Vec<(String, String)>,
    pub fail_next: Option<String>,
}

#[cfg(test)]
impl Host for Recorder {
    fn nft(&mut self, script: &str) -> Result<(), ProxyError> {
        let mut s = self.state.lock().unwrap();
        if let Some(stderr) = s.fail_next.take() {
            return Err(ProxyError::Command { backend: NAME, command: "nft -f -".into(), stderr });
        }
        s.scripts.push(script.to_string());
        Ok(())
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<bool, ProxyError> {
        self.state.lock().unwrap().sysctls.push((key.to_string(), value.to_string()));
        Ok(key != "net.bridge.bridge-nf-call-iptables")
    }
}
