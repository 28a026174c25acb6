//! `exec <id> cmd...` (or `--process file`): a new process in a running container.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::str::FromStr;

use super::foreground::{become_subreaper, Foreground};
use super::{write_pid_file, Error};
use crate::cgroups::CgroupManager;
use crate::cli::Exec;
use crate::console;
use crate::container::{Status, Store};
use crate::process::{launch, Launch, Role};
use crate::spec::{self, Capabilities, Config, ProcessConfig, SpecError};

pub fn exec(store: &Store, args: &Exec) -> Result<i32, Error> {
    let c = store.load(&args.id)?;
    match c.status(&store.dir(&args.id)) {
        Status::Stopped => return Err(Error::Refused("cannot exec in a stopped container".into())),
        Status::Paused if !args.ignore_paused => {
            return Err(Error::Refused("cannot exec in a paused container (use --ignore-paused to override)".into()));
        }
        _ => {}
    }
    if args.cgroup.is_some() {
        return Err(Error::Refused("--cgroup is not supported by runtime-rs yet".into()));
    }
    let config = Config::from_spec(&c.bundle, c.spec.clone())
        .map_err(|problems| SpecError::Invalid { bundle: c.bundle.clone(), problems })?;
    let mut process = match &args.process {
        Some(file) => spec::load_process(file)?,
        None => from_args(&config, args)?,
    };
    let (socket, relay): (Option<OwnedFd>, Option<UnixStream>) = match (&args.console_socket, process.terminal) {
        (Some(path), true) => (Some(console::connect(path)?.into()), None),
        (None, true) if args.detach => {
            return Err(Error::Refused("cannot allocate tty if runtime-rs will detach without setting console socket".into()));
        }
        (None, true) => {
            let (ours, theirs) = UnixStream::pair().map_err(Error::io("console socket pair"))?;
            if process.console_size.is_none() {
                process.console_size = console::window_size(std::io::stdin().as_fd()).ok();
            }
            (Some(theirs.into()), Some(ours))
        }
        (Some(_), false) => return Err(Error::Refused("cannot use console socket if runtime-rs will not detach or allocate tty".into())),
        (None, false) => (None, None),
    };
    if !args.detach {
        become_subreaper()?;
    }
    let cgroup = c.cgroup();
    let state = c.oci_state(Status::Running);
    let pid = launch(&Launch {
        config: &config,
        process: &process,
        role: Role::Exec { container_pid: c.pid },
        namespaces: config.namespaces.of_process(c.pid),
        cgroup: cgroup.as_ref().map(|c| c as &dyn CgroupManager),
        console_socket: socket,
        preserve_fds: super::lifecycle::preserved_fds(args.preserve_fds),
        state,
    })?;
    if let Some(p) = &args.pid_file {
        write_pid_file(p, pid)?;
    }
    if args.detach {
        return Ok(0);
    }
    let master = match &relay {
        Some(s) => Some(console::recv_fd(s.as_fd())?.0),
        None => None,
    };
    Foreground::setup()?.wait(pid, master)
}

/// The container's own process, changed by the command line as runc's exec does.
fn from_args(config: &Config, args: &Exec) -> Result<ProcessConfig, Error> {
    let mut p = config
        .process
        .clone()
        .ok_or_else(|| Error::Refused("the container's config.json has no process to start from; use --process".into()))?;
    if args.command.is_empty() {
        return Err(Error::Refused("exec needs a command after the container id (or --process FILE)".into()));
    }
    p.args = args.command.clone();
    p.env = merge_env(&p.env, &args.env);
    if let Some(cwd) = &args.cwd {
        if !cwd.is_absolute() {
            return Err(Error::Refused(format!("--cwd {} must be an absolute path", cwd.display())));
        }
        p.cwd = cwd.clone();
    }
    if let Some(user) = &args.user {
        let (uid, gid) = parse_user(user)?;
        p.uid = uid;
        if let Some(gid) = gid {
            p.gid = gid;
        }
    }
    if !args.additional_gids.is_empty() {
        p.additional_gids = args.additional_gids.clone();
    }
    p.terminal = args.tty;
    p.console_size = None;
    if args.no_new_privs {
        p.no_new_privileges = true;
    }
    for name in &args.cap {
        let cap = caps::Capability::from_str(name).map_err(|_| Error::Refused(format!("--cap: unknown capability {name:?}")))?;
        let c = p.capabilities.get_or_insert_with(Capabilities::default);
        for set in [&mut c.bounding, &mut c.effective, &mut c.permitted, &mut c.ambient, &mut c.inheritable] {
            set.insert(cap);
        }
    }
    Ok(p)
}

/// `uid` or `uid:gid`, numbers only (as runc's exec takes it).
fn parse_user(s: &str) -> Result<(u32, Option<u32>), Error> {
    let bad = || Error::Refused(format!("--user {s:?}: use <uid>[:<gid>] with numbers"));
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u.parse().map_err(|_| bad())?;
    let gid = g.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

/// The container's environment with `extra` added; a later value for a key replaces the earlier.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let all: Vec<&String> = base.iter().chain(extra).collect();
    let mut seen = HashSet::new();
    let mut out: Vec<String> = all
        .iter()
        .rev()
        .filter(|kv| seen.insert(kv.split_once('=').map_or(kv.as_str(), |(k, _)| k)))
        .map(|kv| kv.to_string())
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_env_wins_and_order_is_kept() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let got = merge_env(&base, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(got, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn user_parses_numbers_only() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("nobody").is_err());
    }
}
