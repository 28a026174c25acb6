//! The on-disk store, in the reference host-local plugin's format so either plugin can take
//! over a node's state: under `<dataDir>/<network>/`, one file per allocated address named
//! by the address (Go's `net.IP.String` form, which `Display` matches for IPv4 and for
//! IPv6 as RFC 5952), holding `<containerID>\r\n<ifname>`; `last_reserved_ip.<set>` holding
//! the last address reserved in range set `<set>`; and `lock`, held with `flock(LOCK_EX)` for
//! as long as the [`Store`] lives so that concurrent plugin processes serialise.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::IpamError;
use super::range::canonical;

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";

/// Who holds an address: the container and, in files written by current plugins, its
/// interface (files of old reference versions hold the container ID alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub ifname: Option<String>,
}

impl Owner {
    fn parse(content: &str) -> Owner {
        match content.trim().split_once(LINE_BREAK) {
            Some((id, ifname)) => Owner { id: id.trim().into(), ifname: Some(ifname.trim().into()) },
            None => Owner { id: content.trim().into(), ifname: None },
        }
    }

    /// Whether this is the attachment `(id, ifname)`; an old-format file matches any ifname.
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        self.id == id && self.ifname.as_deref().is_none_or(|i| i == ifname)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub owner: Owner,
}

/// A network's store, locked: every method runs under the exclusive lock.
pub struct Store {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Creates `<data_dir>/<network>` if needed and takes its lock, waiting for other holders.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, IpamError> {
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir).map_err(IpamError::io("cannot create data directory", &dir))?;
        let lock_path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(IpamError::io("cannot open lock file", &lock_path))?;
        let mut file = file;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => break lock,
                Err((f, nix::errno::Errno::EINTR)) => file = f,
                Err((_, errno)) => return Err(IpamError::io("cannot lock", &lock_path)(errno.into())),
            }
        };
        Ok(Store { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every allocated address with its owner. Files that are not named by an address
    /// (`lock`, `last_reserved_ip.*`, strangers) are not allocations.
    pub fn allocations(&self) -> Result<Vec<Allocation>, IpamError> {
        let entries = std::fs::read_dir(&self.dir).map_err(IpamError::io("cannot read data directory", &self.dir))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(IpamError::io("cannot read data directory", &self.dir))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<IpAddr>().ok()) else { continue };
            match std::fs::read_to_string(entry.path()) {
                Ok(content) => out.push(Allocation { ip: canonical(ip), owner: Owner::parse(&content) }),
                // Released by hand between listing and reading: not an allocation.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::io("cannot read allocation", entry.path())(e)),
            }
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// Claims `ip` for `(id, ifname)` and remembers it as range set `set`'s last reservation;
    /// `false` when the address is already taken.
    pub fn reserve(&self, ip: IpAddr, id: &str, ifname: &str, set: usize) -> Result<bool, IpamError> {
        let path = self.path_of(ip);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(IpamError::io("cannot create allocation", &path)(e)),
        };
        if let Err(e) = file.write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes()) {
            let _ = std::fs::remove_file(&path);
            return Err(IpamError::io("cannot write allocation", &path)(e));
        }
        let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        if let Err(e) = std::fs::write(&last, ip.to_string()) {
            // Undo the claim: the caller only rolls back what it was told it got.
            let _ = std::fs::remove_file(&path);
            return Err(IpamError::io("cannot write", &last)(e));
        }
        Ok(true)
    }

    /// The last address reserved in range set `set`, if recorded and readable.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let content = std::fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"))).ok()?;
        content.trim().parse().ok().map(canonical)
    }

    /// Frees `ip`; freeing a free address is not an error.
    pub fn release(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.path_of(ip);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(IpamError::io("cannot release", &path)(e)),
            _ => Ok(()),
        }
    }

    fn path_of(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_go_net_ip_string() {
        // RFC 5952 as Go writes it: lowercase, longest zero run compressed, a lone zero not.
        for (ip, go) in [("FD00:0:0:0:0:0:0:A", "fd00::a"), ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"), ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("::ffff:10.0.0.1", "10.0.0.1")] {
            assert_eq!(canonical(ip.parse().unwrap()).to_string(), go);
        }
    }

    #[test]
    fn writes_the_reference_format() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), "net1").unwrap();
        let v6: IpAddr = "fd00:0:0:0::a".parse().unwrap();
        assert!(store.reserve("10.0.0.2".parse().unwrap(), "c1", "eth0", 0).unwrap());
        assert!(!store.reserve("10.0.0.2".parse().unwrap(), "c2", "eth0", 0).unwrap());
        assert!(store.reserve(v6, "c2", "net1", 1).unwrap());
        let dir = tmp.path().join("net1");
        assert_eq!(std::fs::read_to_string(dir.join("10.0.0.2")).unwrap(), "c1\r\neth0");
        assert_eq!(std::fs::read_to_string(dir.join("fd00::a")).unwrap(), "c2\r\nnet1");
        assert_eq!(std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(), "10.0.0.2");
        assert!(dir.join("lock").is_file());
        assert_eq!(store.last_reserved(1), Some(v6));
        assert_eq!(store.last_reserved(7), None);
        // A file an old reference version wrote: the container ID alone.
        std::fs::write(dir.join("10.0.0.3"), "old\n").unwrap();
        let all = store.allocations().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[1].owner.is("old", "anything") && !all[0].owner.is("c1", "eth1") && all[0].owner.is("c1", "eth0"));
        store.release("10.0.0.2".parse().unwrap()).unwrap();
        store.release("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(store.allocations().unwrap().len(), 2);
    }
}
