//! The sandbox's namespaces without a pause process: a short-lived thread `unshare`s new
//! network, IPC and UTS namespaces, sets the pod's hostname in the new UTS namespace, and
//! bind-mounts `/proc/thread-self/ns/{net,ipc,uts}` onto files under the sandbox's state
//! directory. The mounts keep the namespaces alive after the thread exits; containers join
//! them by path, and removal unmounts them.
//!
//! A shared PID namespace (`pid: POD`) cannot be held this way: a PID namespace needs a first
//! process (its init, reaping orphans) and dies with it. `pod_init` starts that process; its
//! namespace file is recorded here too (`pid`), so release unmounts it with the others.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::mounts;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating namespace file {}: {source}", path.display())]
    CreateFile { path: PathBuf, source: std::io::Error },
    #[error("unsharing the sandbox's namespaces ({what}): {source}")]
    Unshare { what: String, source: nix::Error },
    #[error("setting hostname {hostname:?} in the sandbox's UTS namespace: {source}")]
    Hostname { hostname: String, source: nix::Error },
    #[error("bind-mounting the new {kind} namespace on {}: {source}", path.display())]
    Mount { kind: &'static str, path: PathBuf, source: nix::Error },
    #[error("unmounting namespace file {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("removing namespace file {}: {source}", path.display())]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("opening namespace file {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("entering namespace {}: {source}", path.display())]
    Enter { path: PathBuf, source: nix::Error },
    #[error("the namespace thread panicked")]
    ThreadPanicked,
}

/// Which namespaces the sandbox gets of its own; the others are the node's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// Set in the new UTS namespace (ignored without one).
    pub hostname: String,
}

/// The bind-mounted namespace files; `None` means the node's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespacePaths {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod init's pid namespace (`pid: POD`); absent from records older than it.
    #[serde(default)]
    pub pid: Option<PathBuf>,
}

impl NamespacePaths {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.net, &self.ipc, &self.uts, &self.pid].into_iter().flatten()
    }

    /// True while every namespace file still holds its namespace (for `pid`, that is not
    /// enough: its init must live, see `Sandbox::alive`).
    pub fn alive(&self) -> bool {
        self.all().all(|p| mounts::is_namespace(p))
    }
}

const KINDS: [(&str, CloneFlags); 3] = [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];

/// Creates the requested namespaces and their files in `dir`. On failure nothing is left
/// mounted.
pub fn create(dir: &Path, req: &Request) -> Result<NamespacePaths, Error> {
    if !(req.net || req.ipc || req.uts) {
        return Ok(NamespacePaths::default());
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateFile { path: dir.to_path_buf(), source })?;
    // A thread of its own, because unshare moves the calling thread into the new namespaces
    // for good; the thread ends right after, taking nothing of the sandbox's with it.
    std::thread::scope(|s| s.spawn(|| create_here(dir, req)).join()).map_err(|_| Error::ThreadPanicked)?
}

fn create_here(dir: &Path, req: &Request) -> Result<NamespacePaths, Error> {
    let wanted = [req.net, req.ipc, req.uts];
    let mut flags = CloneFlags::empty();
    let mut what = Vec::new();
    for ((kind, flag), want) in KINDS.iter().zip(wanted) {
        if want {
            flags |= *flag;
            what.push(*kind);
        }
    }
    nix::sched::unshare(flags).map_err(|source| Error::Unshare { what: what.join(","), source })?;
    if req.uts && !req.hostname.is_empty() {
        nix::unistd::sethostname(&req.hostname).map_err(|source| Error::Hostname { hostname: req.hostname.clone(), source })?;
    }
    let mut paths = NamespacePaths::default();
    for ((kind, _), want) in KINDS.iter().zip(wanted) {
        if !want {
            continue;
        }
        let path = dir.join(kind);
        if let Err(e) = bind(kind, &path) {
            let _ = release(&paths);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        match *kind {
            "net" => paths.net = Some(path),
            "ipc" => paths.ipc = Some(path),
            _ => paths.uts = Some(path),
        }
    }
    Ok(paths)
}

fn bind(kind: &'static str, path: &Path) -> Result<(), Error> {
    File::create(path).map_err(|source| Error::CreateFile { path: path.to_path_buf(), source })?;
    let source = PathBuf::from("/proc/thread-self/ns").join(kind);
    nix::mount::mount(Some(&source), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|source| Error::Mount { kind, path: path.to_path_buf(), source })
}

/// Unmounts and deletes the namespace files; the namespaces die once no container is in them.
/// Repeatable: missing files are fine.
pub fn release(paths: &NamespacePaths) -> Result<(), Error> {
    for path in paths.all() {
        mounts::unmount_all(path).map_err(|source| Error::Unmount { path: path.clone(), source })?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Remove { path: path.clone(), source }),
        }
    }
    Ok(())
}

/// Runs `f` on a thread that joined the given namespace files (each `(path, flag)`), e.g. to
/// write sysctls inside the sandbox.
pub fn run_in<T: Send>(namespaces: &[(&Path, CloneFlags)], f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let files = namespaces
        .iter()
        .map(|(path, flag)| File::open(path).map(|f| (f, *path, *flag)).map_err(|source| Error::Open { path: path.to_path_buf(), source }))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::scope(|s| {
        s.spawn(move || {
            for (file, path, flag) in &files {
                nix::sched::setns(file, *flag).map_err(|source| Error::Enter { path: path.to_path_buf(), source })?;
            }
            Ok(f())
        })
        .join()
    })
    .map_err(|_| Error::ThreadPanicked)?
}
