//! Running the firewall tools (`nft`, `iptables`), optionally inside a named network
//! namespace through `ip netns exec` (the tools act on the caller's namespace; the root
//! tests use this so they never touch the host's own rules).

use super::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct Runner {
    pub backend: &'static str,
    /// Run inside this named namespace (`/run/netns/<name>`) instead of the caller's.
    pub netns: Option<String>,
}

impl Runner {
    /// Runs `program args`, feeding `stdin` when given; returns stdout, or the command and
    /// its stderr on failure.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let out = crate::tool::run(self.netns.as_deref(), program, args, stdin).map_err(|source| Error::Spawn { backend: self.backend, program: program.to_string(), source })?;
        if !out.status.success() {
            let mut command = format!("{program} {}", args.join(" "));
            if let Some(text) = stdin {
                command.push_str(&format!(" <<EOF\n{text}EOF"));
            }
            return Err(Error::Command {
                backend: self.backend,
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Serialises our read-then-modify sequences between concurrent plugin runs: a rule handle
/// one run read must not be deleted under it by another. Held until dropped.
pub fn lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    const PATH: &str = "/run/krs-cni-firewall.lock";
    let lock_err = |source: std::io::Error| Error::Lock { path: PATH.to_string(), source };
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(PATH).map_err(lock_err)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| lock_err(errno.into()))
}
