//! Facts about the machine the Node reports (CPUs, memory, disk, identity, addresses),
//! read from the host behind [`Machine`] so the Node's object and conditions are built and
//! tested from plain values.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} has no {field} line")]
    Missing { path: PathBuf, field: &'static str },
    #[error("statvfs of {path} (the kubelet's state directory, for ephemeral-storage): {source}")]
    Statvfs { path: PathBuf, source: nix::Error },
    #[error("listing the host's network interfaces: {0}")]
    Interfaces(nix::Error),
}

/// What identifies and sizes the machine; read once at start (and again when the status is
/// computed, cheap enough every 10 s).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MachineFacts {
    pub hostname: String,
    pub num_cpus: u32,
    pub memory_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// Non-loopback IPv4 addresses of the host's interfaces, in interface order.
    pub addresses: Vec<IpAddr>,
    /// Size of the filesystem holding the kubelet's state directory (the node's
    /// ephemeral-storage).
    pub fs_capacity_bytes: u64,
}

/// What changes from one status update to the next: the inputs of the pressure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineUsage {
    pub memory_available_bytes: u64,
    pub fs_capacity_bytes: u64,
    pub fs_available_bytes: u64,
}

pub trait Machine: Send + Sync {
    fn facts(&self) -> Result<MachineFacts, MachineError>;
    fn usage(&self) -> Result<MachineUsage, MachineError>;
}

/// The real machine: /proc, /sys, /etc and the state directory's filesystem.
#[derive(Debug, Clone)]
pub struct HostMachine {
    /// The kubelet's state directory (e.g. /var/lib/kubelet): its filesystem is nodefs.
    pub state_dir: PathBuf,
    /// Where /proc, /sys and /etc are; `/` except in tests.
    pub root: PathBuf,
}

impl HostMachine {
    pub fn new(state_dir: impl Into<PathBuf>) -> HostMachine {
        HostMachine { state_dir: state_dir.into(), root: PathBuf::from("/") }
    }

    fn read(&self, rel: &str) -> Result<String, MachineError> {
        let path = self.root.join(rel);
        std::fs::read_to_string(&path).map_err(|source| MachineError::Read { path, source })
    }

    /// A file that may be absent or unreadable (product_uuid is root-only, machine-id is
    /// missing in some containers): empty then, as upstream reports.
    fn read_optional(&self, rel: &str) -> String {
        self.read(rel).map(|s| s.trim().to_string()).unwrap_or_default()
    }

    fn meminfo(&self) -> Result<HashMap<String, u64>, MachineError> {
        Ok(parse_meminfo(&self.read("proc/meminfo")?))
    }

    fn statvfs(&self) -> Result<(u64, u64), MachineError> {
        let st = nix::sys::statvfs::statvfs(&self.state_dir).map_err(|source| MachineError::Statvfs { path: self.state_dir.clone(), source })?;
        let frag = st.fragment_size() as u64;
        Ok((st.blocks() as u64 * frag, st.blocks_available() as u64 * frag))
    }
}

impl Machine for HostMachine {
    fn facts(&self) -> Result<MachineFacts, MachineError> {
        let mem = self.meminfo()?;
        let memory_bytes = *mem.get("MemTotal").ok_or(MachineError::Missing { path: self.root.join("proc/meminfo"), field: "MemTotal" })?;
        let uname = nix::sys::utsname::uname().ok();
        let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        let (fs_capacity_bytes, _) = self.statvfs()?;
        Ok(MachineFacts {
            hostname: hostname.to_lowercase(),
            num_cpus: num_cpus(),
            memory_bytes,
            machine_id: self.read_optional("etc/machine-id"),
            system_uuid: self.read_optional("sys/class/dmi/id/product_uuid"),
            boot_id: self.read_optional("proc/sys/kernel/random/boot_id"),
            kernel_version: uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            os_image: os_image(&self.read("etc/os-release").unwrap_or_default()),
            addresses: interface_addresses()?,
            fs_capacity_bytes,
        })
    }

    fn usage(&self) -> Result<MachineUsage, MachineError> {
        let mem = self.meminfo()?;
        let available = mem.get("MemAvailable").or(mem.get("MemFree")).copied().unwrap_or(0);
        let (fs_capacity_bytes, fs_available_bytes) = self.statvfs()?;
        Ok(MachineUsage { memory_available_bytes: available, fs_capacity_bytes, fs_available_bytes })
    }
}

/// CPUs this process may run on (its affinity mask, as upstream counts the CPUs it can
/// use; not the cgroup quota, which is the node's business), at least 1.
fn num_cpus() -> u32 {
    use nix::sched::{CpuSet, sched_getaffinity};
    let n = match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count()).filter(|i| set.is_set(*i).unwrap_or(false)).count() as u32,
        Err(_) => 0,
    };
    if n > 0 { n } else { std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1) }
}

/// /proc/meminfo's `Name: N kB` lines in bytes.
pub fn parse_meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let mult = if parts.next() == Some("kB") { 1024 } else { 1 };
            Some((name.trim().to_string(), n * mult))
        })
        .collect()
}

/// PRETTY_NAME of os-release, unquoted; "Linux" when there is none, as upstream falls back.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".to_string())
}

fn interface_addresses() -> Result<Vec<IpAddr>, MachineError> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(MachineError::Interfaces)? {
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else { continue };
        let ip = IpAddr::V4(addr.ip());
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// A machine of fixed facts for tests; usage can be changed between updates.
#[derive(Debug, Default)]
pub struct FakeMachine {
    pub facts: MachineFacts,
    pub usage: std::sync::Mutex<MachineUsage>,
}

impl Machine for FakeMachine {
    fn facts(&self) -> Result<MachineFacts, MachineError> {
        Ok(self.facts.clone())
    }
    fn usage(&self) -> Result<MachineUsage, MachineError> {
        Ok(*self.usage.lock().unwrap())
    }
}

impl FakeMachine {
    /// 4 CPUs, 8 GiB, a 100 GiB disk half free, one address.
    pub fn typical() -> FakeMachine {
        FakeMachine {
            facts: MachineFacts {
                hostname: "node-a".into(),
                num_cpus: 4,
                memory_bytes: 8 << 30,
                machine_id: "m-id".into(),
                system_uuid: "s-uuid".into(),
                boot_id: "b-id".into(),
                kernel_version: "6.1.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                addresses: vec!["10.0.0.5".parse().unwrap()],
                fs_capacity_bytes: 100 << 30,
            },
            usage: std::sync::Mutex::new(MachineUsage { memory_available_bytes: 4 << 30, fs_capacity_bytes: 100 << 30, fs_available_bytes: 50 << 30 }),
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_in_bytes() {
        let m = parse_meminfo("MemTotal:        8130084 kB\nMemFree:  100 kB\nHugePages_Total:       0\n");
        assert_eq!(m["MemTotal"], 8130084 * 1024);
        assert_eq!(m["HugePages_Total"], 0);
    }

    #[test]
    fn os_image_is_the_pretty_name() {
        assert_eq!(os_image("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_image("NAME=x\n"), "Linux");
    }

    #[test]
    fn the_host_machine_reads_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let m = HostMachine::new(dir.path());
        let facts = m.facts().unwrap();
        assert!(facts.num_cpus >= 1 && facts.memory_bytes > 0 && facts.fs_capacity_bytes > 0);
        assert!(!facts.kernel_version.is_empty());
        let usage = m.usage().unwrap();
        assert!(usage.fs_available_bytes <= usage.fs_capacity_bytes);
    }
}
