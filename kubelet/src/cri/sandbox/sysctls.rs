//! The pod's sysctls (`linux.sysctls`): only namespaced ones are accepted, each written inside
//! the sandbox's own namespace (`net.*` in its netns, the IPC ones in its IPC namespace), so
//! no pod can change the node's kernel settings. Names are checked before anything is
//! created.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sysctl {name:?}: invalid name")]
    InvalidName { name: String },
    #[error("sysctl {name:?} is not namespaced, so a pod cannot set it")]
    NotNamespaced { name: String },
    #[error("sysctl {name:?} needs the pod's own {namespace} namespace, but the pod uses the node's")]
    HostNamespace { name: String, namespace: &'static str },
    #[error("sysctl {name:?}: writing {value:?} to {}: {source}", path.display())]
    Write { name: String, value: String, path: PathBuf, source: std::io::Error },
}

/// Which of the sandbox's namespaces a sysctl lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Net,
    Ipc,
}

/// A checked sysctl: its namespace and its file under `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
    pub kind: Kind,
    pub path: PathBuf,
}

/// Checks every sysctl's name against the namespaced ones (the kernel's list, as the
/// kubelet's "safe and unsafe namespaced sysctls" have it) and the pod's namespace modes.
pub fn validate(sysctls: &BTreeMap<String, String>, own_netns: bool, own_ipc: bool) -> Result<Vec<Sysctl>, Error> {
    sysctls
        .iter()
        .map(|(name, value)| {
            let rel = proc_sys_path(name)?;
            let kind = kind_of(&rel).ok_or_else(|| Error::NotNamespaced { name: name.clone() })?;
            let (own, namespace) = match kind {
                Kind::Net => (own_netns, "network"),
                Kind::Ipc => (own_ipc, "IPC"),
            };
            if !own {
                return Err(Error::HostNamespace { name: name.clone(), namespace });
            }
            Ok(Sysctl { name: name.clone(), value: value.clone(), kind, path: PathBuf::from("/proc/sys").join(rel) })
        })
        .collect()
}

/// `net.ipv4.ip_forward` → `net/ipv4/ip_forward`. A name with slashes uses them as separators
/// and keeps its dots (`net/ipv4/conf/eth0.100/forwarding`), as sysctl(8) and the kubelet do.
fn proc_sys_path(name: &str) -> Result<String, Error> {
    let invalid = || Error::InvalidName { name: name.to_string() };
    let rel = if name.contains('/') { name.to_string() } else { name.replace('.', "/") };
    let ok_chars = rel.chars().all(|c| c.is_ascii_alphanumeric() || "_-/.".contains(c));
    if !ok_chars || rel.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(invalid());
    }
    Ok(rel)
}

fn kind_of(rel: &str) -> Option<Kind> {
    const IPC: [&str; 7] =
        ["kernel/shmmax", "kernel/shmall", "kernel/shmmni", "kernel/shm_rmid_forced", "kernel/msgmax", "kernel/msgmnb", "kernel/msgmni"];
    if rel.starts_with("net/") {
        Some(Kind::Net)
    } else if IPC.contains(&rel) || rel == "kernel/sem" || rel.starts_with("fs/mqueue/") {
        Some(Kind::Ipc)
    } else {
        None
    }
}

/// Writes the sysctls of one kind; the caller runs this on a thread inside that namespace
/// (`/proc/sys/net` and the IPC files show the calling thread's namespaces).
pub fn apply(sysctls: &[Sysctl], kind: Kind) -> Result<(), Error> {
    for s in sysctls.iter().filter(|s| s.kind == kind) {
        std::fs::write(&s.path, s.value.as_bytes()).map_err(|source| Error::Write {
            name: s.name.clone(),
            value: s.value.clone(),
            path: s.path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn namespaced_sysctls_map_to_proc_sys_files() {
        let got = validate(&map(&[("net.ipv4.ip_unprivileged_port_start", "0"), ("kernel.shm_rmid_forced", "1")]), true, true).unwrap();
        assert_eq!(got[0].kind, Kind::Ipc);
        assert_eq!(got[0].path, PathBuf::from("/proc/sys/kernel/shm_rmid_forced"));
        assert_eq!(got[1].kind, Kind::Net);
        assert_eq!(got[1].path, PathBuf::from("/proc/sys/net/ipv4/ip_unprivileged_port_start"));
        let slashed = validate(&map(&[("net/ipv4/conf/eth0.100/forwarding", "1")]), true, true).unwrap();
        assert_eq!(slashed[0].path, PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding"));
    }

    #[test]
    fn bad_foreign_or_host_namespace_sysctls_are_refused() {
        for bad in ["net..ipv4", "net/../../etc", "net.ipv4.a b", "", "net/ipv4/"] {
            assert!(matches!(validate(&map(&[(bad, "1")]), true, true), Err(Error::InvalidName { .. })), "{bad:?} accepted");
        }
        let err = validate(&map(&[("kernel.panic", "1")]), true, true).unwrap_err();
        assert!(matches!(err, Error::NotNamespaced { .. }), "{err}");
        let err = validate(&map(&[("net.core.somaxconn", "1024")]), false, true).unwrap_err();
        assert!(err.to_string().contains("network namespace"), "{err}");
        let err = validate(&map(&[("kernel.msgmax", "1")]), true, false).unwrap_err();
        assert!(err.to_string().contains("IPC namespace"), "{err}");
    }
}
