//! `run <id>`: create and start; in the foreground, wait for the container, forward signals,
//! relay its terminal, and return its exit code; then delete it unless `--keep`.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::foreground::{become_subreaper, Foreground};
use super::{create, lifecycle, write_pid_file, Error};
use crate::cli::Run;
use crate::console;
use crate::container::Store;
use crate::spec;

pub fn run(store: &Store, args: &Run) -> Result<i32, Error> {
    let config = spec::load_bundle(&args.opts.bundle)?;
    let terminal = config.process.as_ref().is_some_and(|p| p.terminal);
    let (socket, relay): (Option<OwnedFd>, Option<UnixStream>) = if args.detach {
        (create::console_socket_for_detached(&config, &args.opts)?, None)
    } else {
        match (&args.opts.console_socket, terminal) {
            (Some(path), true) => (Some(console::connect(path)?.into()), None),
            (None, true) => {
                let (ours, theirs) = UnixStream::pair().map_err(Error::io("console socket pair"))?;
                (Some(theirs.into()), Some(ours))
            }
            (Some(_), false) => return Err(Error::Refused("cannot use console socket if runtime-rs will not detach or allocate tty".into())),
            (None, false) => (None, None),
        }
    };
    if !args.detach && !args.no_subreaper {
        become_subreaper()?;
    }
    let c = lifecycle::create(store, &args.id, config, &args.opts, socket)?;
    let started = (|| {
        if let Some(p) = &args.opts.pid_file {
            write_pid_file(p, c.pid)?;
        }
        // The init sent the terminal's master during create; it waits in our socket.
        let master = match &relay {
            Some(s) => Some(console::recv_fd(s.as_fd())?.0),
            None => None,
        };
        let fg = if args.detach { None } else { Some(Foreground::setup()?) };
        lifecycle::start(store, &c)?;
        Ok::<_, Error>((master, fg))
    })();
    let (master, fg) = match started {
        Ok(v) => v,
        Err(e) => {
            let _ = lifecycle::destroy(store, &c);
            return Err(e);
        }
    };
    let Some(mut fg) = fg else { return Ok(0) };
    let code = fg.wait(c.pid, master)?;
    if !args.keep {
        lifecycle::destroy(store, &c)?;
    }
    Ok(code)
}
