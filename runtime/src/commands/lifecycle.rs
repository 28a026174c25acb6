//! The steps several verbs share: create a container, start it, destroy it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::Error;
use crate::cgroups::{container_cgroup, find_hierarchy, own_cgroup, systemd_cgroup_path, CgroupManager, CgroupV2};
use crate::cli::CreateOptions;
use crate::container::{process_start_time, Container, Status, Store};
use crate::hooks::{self, HookPoint};
use crate::process::{launch, Launch, Role};
use crate::spec::Config;

const EXEC_FIFO: &str = "exec.fifo";

/// How many descriptors from 3 up a new process inherits: socket-activation ones
/// (`LISTEN_FDS`, as systemd passes them) plus `--preserve-fds`.
pub fn preserved_fds(extra: u32) -> i32 {
    let listen: i32 = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    listen + extra as i32
}

/// Where the container's cgroup goes. With `--systemd-cgroup` the path is systemd's
/// `slice:prefix:name`, laid out as systemd would but made with cgroupfs.
pub fn cgroup_for(config: &Config, id: &str, systemd: bool) -> Result<CgroupV2, Error> {
    let hierarchy = find_hierarchy()?;
    let own = own_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    let path = match systemd {
        true => Some(systemd_cgroup_path(config.cgroups_path.as_deref().and_then(Path::to_str), id)?),
        false => config.cgroups_path.clone(),
    };
    Ok(CgroupV2::new(container_cgroup(&hierarchy, &own, path.as_deref(), id)))
}

/// Create the container: state directory, exec fifo, cgroup, and the init, which then waits
/// for `start`. On failure everything made so far is removed again.
pub fn create(store: &Store, id: &str, config: Config, opts: &CreateOptions, console_socket: Option<OwnedFd>) -> Result<Container, Error> {
    let dir = store.create_dir(id)?;
    let mut cgroup = None;
    let res = create_in(store, id, &dir, config, opts, console_socket, &mut cgroup);
    if res.is_err() {
        if let Some((cg, parents)) = &cgroup {
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleaning up after a failed create: {e}");
            }
            CgroupV2::remove_parents(parents);
        }
        let _ = store.remove(id);
    }
    res
}

fn create_in(
    store: &Store,
    id: &str,
    dir: &Path,
    config: Config,
    opts: &CreateOptions,
    console_socket: Option<OwnedFd>,
    cgroup_out: &mut Option<(CgroupV2, Vec<std::path::PathBuf>)>,
) -> Result<Container, Error> {
    let process = config
        .process
        .as_ref()
        .ok_or_else(|| Error::refused(format!("bundle {}: config.json has no process to run", config.bundle.display())))?;
    let fifo = dir.join(EXEC_FIFO);
    make_exec_fifo(&fifo, config.host_root_ids())?;
    // Held until launch returns; the init inherits it (see Role::Init).
    let fifo_fd = nix::fcntl::open(&fifo, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("open {}", fifo.display()))(e.into()))?;

    let cgroup = cgroup_for(&config, id, opts.systemd_cgroup)?;
    let parents = cgroup.missing_parents();
    if let Err(e) = cgroup.create() {
        // Not destroy(): the cgroup may be someone else's that holds processes.
        CgroupV2::remove_parents(&parents);
        return Err(e.into());
    }
    *cgroup_out = Some((cgroup.clone(), parents));
    // Before any process exists in the cgroup: the container never runs unlimited, and the
    // init builds the rootfs under the device rules too.
    cgroup.apply(&config.resources)?;
    cgroup.set_devices(&config.device_rules)?;

    let created = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let mut record = Container {
        id: id.to_string(),
        bundle: config.bundle.clone(),
        rootfs: config.rootfs.clone(),
        pid: 0,
        pid_start_time: 0,
        created,
        owner_uid: nix::unistd::geteuid().as_raw(),
        cgroup: Some(cgroup.path().to_path_buf()),
        spec: config.spec.clone(),
    };
    let launch_spec = Launch {
        config: &config,
        process,
        role: Role::Init { id: id.to_string(), exec_fifo: fifo_fd.as_raw_fd(), no_pivot: opts.no_pivot, no_new_keyring: opts.no_new_keyring },
        namespaces: config.namespaces.clone(),
        cgroup: Some(&cgroup),
        console_socket,
        preserve_fds: preserved_fds(opts.preserve_fds),
        state: record.oci_state(Status::Creating),
    };
    let pid = launch(&launch_spec)?;
    record.pid = pid;
    record.pid_start_time = process_start_time(pid).unwrap_or(0);
    store.save(&record)?;
    Ok(record)
}

/// The fifo the init blocks on until `start`. The init opens it for writing as the
/// container's root, which in a user namespace is not the host's root: like runc, give it to
/// that user, with a mode the umask cannot narrow.
fn make_exec_fifo(fifo: &Path, (uid, gid): (u32, u32)) -> Result<(), Error> {
    let err = |e: nix::Error| Error::io(format!("create {}", fifo.display()))(e.into());
    nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o622)).map_err(err)?;
    nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, fifo, Mode::from_bits_truncate(0o622), nix::sys::stat::FchmodatFlags::FollowSymlink).map_err(err)?;
    nix::unistd::chown(fifo, Some(uid.into()), Some(gid.into())).map_err(err)
}

/// Let a created container's init run the user's program.
pub fn start(store: &Store, c: &Container) -> Result<(), Error> {
    let dir = store.dir(&c.id);
    match c.status(&dir) {
        Status::Created => {}
        Status::Stopped => return Err(Error::refused("cannot start a container that has stopped")),
        _ => return Err(Error::refused("cannot start an already running container")),
    }
    let fifo_path = dir.join(EXEC_FIFO);
    let fifo = nix::fcntl::open(&fifo_path, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("open {}", fifo_path.display()))(e.into()))?;
    wait_readable(&fifo, c)?;
    // Read to the end: the init closes its end by executing the program (after the
    // startContainer hooks), so poststart runs only once the program runs, as with runc.
    let data = read_to_end(&fifo)?;
    let outcome = exec_fifo_outcome(&data);
    std::fs::remove_file(&fifo_path).map_err(Error::io(format!("remove {}", fifo_path.display())))?;
    outcome.map_err(Error::Refused)?;
    let state = c.oci_state(Status::Running).to_string();
    for e in hooks::run_all(HookPoint::Poststart, c.spec.hooks().as_ref(), &state) {
        tracing::warn!("{e}");
    }
    Ok(())
}

/// What the init wrote to the exec fifo: `0` when `start` opened it, then nothing more if it
/// executed the program, or why it could not (a startContainer hook failed, execve failed).
fn exec_fifo_outcome(data: &[u8]) -> Result<(), String> {
    match data.split_first() {
        None => Err("cannot start a container that has stopped (its init exited)".into()),
        Some((b'0', [])) => Ok(()),
        Some((b'0', why)) => Err(format!("cannot start the container's program: {}", String::from_utf8_lossy(why))),
        Some(_) => Err(format!("unexpected data in the exec fifo: {:?}", String::from_utf8_lossy(data))),
    }
}

/// Everything in the (non-blocking) fifo until its writer closes it.
fn read_to_end(fifo: &OwnedFd) -> Result<Vec<u8>, Error> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fifo.as_fd(), &mut buf) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(Error::io("wait on the exec fifo")(e.into())),
                }
            }
            Err(e) => return Err(Error::io("read the exec fifo")(e.into())),
        }
    }
}

/// Wait until the init writes to the fifo, giving up if it dies first.
fn wait_readable(fifo: &OwnedFd, c: &Container) -> Result<(), Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {
                if !c.init_running() {
                    return Err(Error::refused("cannot start a container that has stopped (its init exited)"));
                }
            }
            Ok(_) => return Ok(()),
            Err(e) => return Err(Error::io("wait on the exec fifo")(e.into())),
        }
    }
}

/// Remove a stopped (or about to be killed) container: its processes, its cgroup, poststop
/// hooks, and its state.
pub fn destroy(store: &Store, c: &Container) -> Result<(), Error> {
    match c.cgroup() {
        Some(cg) => cg.destroy()?,
        None => {
            if c.init_running() {
                let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
                wait_gone(c);
            }
        }
    }
    let state = c.oci_state(Status::Stopped).to_string();
    for e in hooks::run_all(HookPoint::Poststop, c.spec.hooks().as_ref(), &state) {
        tracing::warn!("{e}");
    }
    store.remove(&c.id).map_err(Error::from)
}

fn wait_gone(c: &Container) {
    let mut pause = Duration::from_micros(200);
    for _ in 0..200 {
        if !c.init_running() {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    #[test]
    fn exec_fifo_outcome_tells_exec_from_failure() {
        assert_eq!(exec_fifo_outcome(b"0"), Ok(()));
        assert!(exec_fifo_outcome(b"").unwrap_err().contains("has stopped"));
        let err = exec_fifo_outcome(b"0startContainer hook /bin/x failed (exit status: 3)").unwrap_err();
        assert_eq!(err, "cannot start the container's program: startContainer hook /bin/x failed (exit status: 3)");
        assert!(exec_fifo_outcome(b"x").is_err());
    }

    #[test]
    fn exec_fifo_mode_is_exact_and_owned_by_the_container_root() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exec.fifo");
        // 022 is the usual umask (so other tests running meanwhile are unaffected); it would
        // turn mkfifo's 0622 into 0600.
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
        let res = make_exec_fifo(&fifo, (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
        nix::sys::stat::umask(old);
        res.unwrap();
        let md = std::fs::metadata(&fifo).unwrap();
        assert!(md.file_type().is_fifo());
        assert_eq!(md.permissions().mode() & 0o777, 0o622);
        assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
    }
}
