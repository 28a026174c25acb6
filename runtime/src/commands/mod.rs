//! One file per verb. Each loads what it needs, checks the container's status, and calls
//! the library; the shared steps (create, start, destroy) are in `lifecycle.rs`.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod foreground;
mod kill;
mod lifecycle;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::io;
use std::path::{Path, PathBuf};

use crate::cgroups::CgroupError;
use crate::cli::{Cli, Command};
use crate::console::ConsoleError;
use crate::container::{Store, StoreError};
use crate::hooks::HookError;
use crate::process::LaunchError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("unable to start container process: {0}")]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// A request that cannot be carried out in the container's current state, or bad usage.
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    fn refused(msg: impl Into<String>) -> Error {
        Error::Refused(msg.into())
    }
}

/// Which verbs put a process into a container, and so must run from the sealed binary.
pub fn enters_container(cmd: &Command) -> bool {
    matches!(cmd, Command::Create(_) | Command::Run(_) | Command::Exec(_))
}

/// Run the verb; the result is the exit code.
pub fn dispatch(cli: Cli) -> Result<i32, Error> {
    let store = Store::new(&cli.root);
    match cli.command {
        Command::Create(mut args) => {
            args.opts.systemd_cgroup = cli.systemd_cgroup;
            create::create(&store, &args).map(|_| 0)
        }
        Command::Start { id } => start::start(&store, &id).map(|_| 0),
        Command::State { id } => state::state(&store, &id).map(|_| 0),
        Command::Kill(args) => kill::kill(&store, &args).map(|_| 0),
        Command::Delete(args) => delete::delete(&store, &args).map(|_| 0),
        Command::Run(mut args) => {
            args.opts.systemd_cgroup = cli.systemd_cgroup;
            run::run(&store, &args)
        }
        Command::Exec(args) => exec::exec(&store, &args),
        Command::List(args) => list::list(&store, &args).map(|_| 0),
        Command::Ps(args) => ps::ps(&store, &args).map(|_| 0),
        Command::Pause { id } => pause::pause(&store, &id).map(|_| 0),
        Command::Resume { id } => pause::resume(&store, &id).map(|_| 0),
        Command::Features => features::features().map(|_| 0),
        Command::Spec(args) => spec::spec(&args).map(|_| 0),
        Command::Update(args) => update::update(&store, &args).map(|_| 0),
        Command::Events(args) => events::events(&store, &args).map(|_| 0),
    }
}

/// Write a pid file atomically, as runc does (containerd reads it as soon as create returns).
fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let path = std::path::absolute(path).map_err(Error::io(format!("pid file {}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp: PathBuf = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")));
    std::fs::write(&tmp, pid.to_string()).map_err(Error::io(format!("write pid file {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(Error::io(format!("write pid file {}", path.display())))
}
