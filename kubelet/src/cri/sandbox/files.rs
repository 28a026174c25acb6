//! The files a sandbox gives its containers: `hostname`, `hosts`, `resolv.conf` (kept under
//! `<root>/sandboxes/<id>/`) and the pod's `/dev/shm`, a tmpfs under the state directory.
//! Containers bind-mount them; the runtime only writes them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cri_api::runtime::v1::DnsConfig;
use nix::mount::MsFlags;

/// The pod's `/dev/shm` size: containerd's and Docker's default.
pub const SHM_SIZE: &str = "64m";

/// The node's resolver configuration, copied when the kubelet sends no DNS config (its
/// `Default` DNS policy leaves the config empty; `ClusterFirst` fills it in).
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
pub const HOST_HOSTS: &str = "/etc/hosts";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("mounting the pod's /dev/shm tmpfs on {}: {source}", path.display())]
    MountShm { path: PathBuf, source: nix::Error },
    #[error("unmounting {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
}

/// `resolv.conf` from the pod's DNS config; `None` when the config is empty, meaning "use the
/// node's".
pub fn render_resolv_conf(dns: &DnsConfig) -> Option<String> {
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// The pod's `/etc/hosts`: localhost names, then the pod's addresses under its hostname once
/// the network gave it some (the kubelet mounts its own hosts file over this one for most
/// pods; this is what the others, and `crictl` users, see).
pub fn render_hosts(hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        for ip in ips {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

/// Writes through a temporary file and a rename, so a container starting meanwhile never
/// mounts a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

pub fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Mounts the pod's shared memory: a tmpfs every container of the pod bind-mounts on
/// `/dev/shm`, so they share POSIX shared memory as they share the IPC namespace.
pub fn mount_shm(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = format!("mode=1777,size={SHM_SIZE}");
    nix::mount::mount(Some("shm"), path, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(|source| Error::MountShm { path: path.to_path_buf(), source })
}

/// Unmounts the pod's shared memory; nothing mounted is fine, so removal can be repeated.
pub fn unmount_shm(path: &Path) -> Result<(), Error> {
    super::mounts::unmount_all(path).map_err(|source| Error::Unmount { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_has_search_then_servers_then_options() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            render_resolv_conf(&dns).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n"
        );
        let only_servers = DnsConfig { servers: vec!["1.1.1.1".into()], ..Default::default() };
        assert_eq!(render_resolv_conf(&only_servers).unwrap(), "nameserver 1.1.1.1\n");
        assert_eq!(render_resolv_conf(&DnsConfig::default()), None);
    }

    #[test]
    fn hosts_has_localhost_and_the_pod_addresses_once_known() {
        let before = render_hosts("web-0", &[]);
        assert!(before.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost"), "{before}");
        assert!(!before.contains("web-0"));
        let after = render_hosts("web-0", &["10.88.0.5".parse().unwrap(), "fd00::5".parse().unwrap()]);
        assert!(after.starts_with(&before));
        assert!(after.ends_with("10.88.0.5\tweb-0\nfd00::5\tweb-0\n"), "{after}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
