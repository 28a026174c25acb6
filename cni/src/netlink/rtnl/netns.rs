//! Doing something from inside another network namespace without moving the caller: a
//! short-lived thread enters the namespace (`setns` is per thread), does the work and ends.
//! What it creates there stays bound to that namespace: a netlink socket talks to the
//! namespace it was created in, a `/proc/sys/net` file is the one of its opener's namespace.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Runs `f` on a thread that has entered the network namespace `netns` first.
pub fn run_in<T: Send>(netns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(netns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The file under `/proc/sys` for a sysctl key. `net.ipv4.ip_forward` has dots for slashes;
/// a key that already contains a slash is taken as a path as is, which is how (as with
/// sysctl(8)) an interface name with a dot is written: `net/ipv4/conf/eth0.100/arp_notify`.
pub fn sysctl_path(key: &str) -> io::Result<PathBuf> {
    let rel = if key.contains('/') { key.to_string() } else { key.replace('.', "/") };
    // Every part a plain name: no empty part (a leading slash, doubled dots), no `..`.
    if rel.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sysctl key"));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_become_slashes() {
        assert_eq!(sysctl_path("net.ipv4.ip_forward").unwrap(), Path::new("/proc/sys/net/ipv4/ip_forward"));
    }

    #[test]
    fn slashed_key_keeps_dotted_interface_names() {
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/arp_notify").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/arp_notify")
        );
    }

    #[test]
    fn keys_cannot_leave_proc_sys() {
        for bad in ["", "/etc/passwd", "net/../../etc/passwd", "net..ipv4", ".net"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
