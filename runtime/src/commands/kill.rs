//! `kill <id> [signal]`: signal the init, or with `--all` every process of the container.

use std::str::FromStr;

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::Error;
use crate::cgroups::CgroupManager;
use crate::cli::Kill;
use crate::container::{Status, Store};

/// A signal as runc accepts it: a number, or a name with or without `SIG`, any case.
pub fn parse_signal(s: &str) -> Result<Signal, Error> {
    let bad = || Error::Refused(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&name).map_err(|_| bad())
}

pub fn kill(store: &Store, args: &Kill) -> Result<(), Error> {
    let signal = parse_signal(args.signal.as_deref().unwrap_or("SIGTERM"))?;
    let c = store.load(&args.id)?;
    let status = c.status(&store.dir(&args.id));
    if args.all {
        if let Some(cg) = c.cgroup() {
            cg.signal_all(signal)?;
            // A frozen process only acts on SIGKILL once thawed.
            if status == Status::Paused && signal == Signal::SIGKILL {
                cg.thaw()?;
            }
            return Ok(());
        }
    }
    if status == Status::Stopped {
        return Err(Error::Refused("container not running".into()));
    }
    send(Pid::from_raw(c.pid), signal).map_err(|e| Error::io(format!("send {signal} to {}", c.pid))(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_runc() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
