//! `delete [--force] <id>`: remove the container and everything create made.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{lifecycle, Error};
use crate::cgroups::CgroupManager;
use crate::cli::Delete;
use crate::container::{Status, Store, StoreError};

pub fn delete(store: &Store, args: &Delete) -> Result<(), Error> {
    let c = match store.load(&args.id) {
        Ok(c) => c,
        // As with runc, --force on a container that is gone cleans up any leftover directory.
        Err(StoreError::NotFound { .. }) if args.force => return store.remove(&args.id).map_err(Error::from),
        Err(e) => return Err(e.into()),
    };
    match c.status(&store.dir(&args.id)) {
        Status::Stopped => {}
        // A created container has not run the user's program: deleting it is always fine.
        Status::Created | Status::Creating => {
            let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
        }
        status @ (Status::Running | Status::Paused) => {
            if !args.force {
                return Err(Error::Refused(format!("cannot delete container {} that is not stopped: {status}", c.id)));
            }
            match c.cgroup() {
                Some(cg) => {
                    cg.signal_all(Signal::SIGKILL)?;
                    if status == Status::Paused {
                        cg.thaw()?;
                    }
                }
                None => {
                    let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
                }
            }
        }
    }
    lifecycle::destroy(store, &c)
}
