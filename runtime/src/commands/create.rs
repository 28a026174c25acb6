//! `create <id>`: build the container; its init waits for `start`.

use std::os::fd::OwnedFd;

use super::{lifecycle, write_pid_file, Error};
use crate::cli::{Create, CreateOptions};
use crate::console;
use crate::container::Store;
use crate::spec::{self, Config};

pub fn create(store: &Store, args: &Create) -> Result<(), Error> {
    let config = spec::load_bundle(&args.opts.bundle)?;
    let socket = console_socket_for_detached(&config, &args.opts)?;
    let c = lifecycle::create(store, &args.id, config, &args.opts, socket)?;
    if let Some(p) = &args.opts.pid_file {
        write_pid_file(p, c.pid)?;
    }
    Ok(())
}

/// A detached container with a terminal needs someone to hand the terminal to.
pub fn console_socket_for_detached(config: &Config, opts: &CreateOptions) -> Result<Option<OwnedFd>, Error> {
    let terminal = config.process.as_ref().is_some_and(|p| p.terminal);
    match (&opts.console_socket, terminal) {
        (Some(path), true) => Ok(Some(console::connect(path)?.into())),
        (None, true) => Err(Error::Refused(
            "cannot allocate tty if runtime-rs will detach without setting console socket".into(),
        )),
        (Some(_), false) => Err(Error::Refused(
            "cannot use console socket if runtime-rs will not detach or allocate tty".into(),
        )),
        (None, false) => Ok(None),
    }
}
